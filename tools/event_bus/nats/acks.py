"""What a replica owes JetStream for the events in its hands: acks, naks, progress.

The consumers report how each event ended from sync code (``replies.py``); the
:class:`Outbox` task sends the resulting acks in that order, a few at a time: it
lingers ``_ACK_LINGER`` after the first one, so the acks of a burst share one
write to the socket (and one wake-up of nats-server) instead of one each. The
:class:`Acks` book keeps every event that is not acked yet:

* handled by every local subscription → ack;
* abandoned (unload or shutdown first) → nak: JetStream offers it again at once,
  to any replica;
* failed after its retries → ack once the dead letter ``_dlq.<name>`` is stored
  (the bus publishes it right after the failure; :meth:`Acks.dead_letter_stored`
  matches it by the failed event's id and the subscriber). If the dead letter
  cannot be stored, the event stays unacked and JetStream offers it again after
  ``EVENT_BUS_ACK_WAIT``: it is never dropped silently.

A consumer redelivers what it believes unacked: after a replica crashed, after
an ack lost while NATS was unreachable, after a nats-server crash that lost the
consumer's latest state. Each consumer (:class:`Handled`) remembers the events
it finished lately: a copy of one of them is acked without running the
handlers again, and a copy of one still being handled is dropped (the copy in
hand acks or hands back the stream's message).

From the moment an event reaches the replica (:meth:`Acks.arrived`, before it
waits for its turn) until it is acked or handed back, :meth:`Acks.keep_alive`
tells JetStream every third of the ack wait that it is still being worked on,
so a long queue or a slow handler is not mistaken for a dead replica.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol

import anyio
import structlog

from microcore import Event

from .._fanout import Subscription
from .replies import Delivery, EventOutcome

__all__ = ("Acks", "Handled", "Message", "Outbox")

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")

_REMEMBERED = 10_000  # finished event ids a consumer remembers, to ack redelivered copies
_ACK_LINGER = 0.002  # s the outbox waits after the first ack, to send the burst's acks at once


class Message(Protocol):
    """The part of a nats-py JetStream message this module acks."""

    async def ack(self) -> None: ...
    async def nak(self, delay: float | None = None) -> None: ...
    async def in_progress(self) -> None: ...


Send = Callable[[], Awaitable[object]]


class Outbox:
    """Sends, in order, what sync code decided to send (acks, naks, progress): one task.

    Not bounded by a size: it holds at most a few entries per event in flight,
    and those are bounded by each consumer's ``max_ack_pending``
    (``EVENT_BUS_BUFFER``). After waking it waits ``linger`` seconds before
    sending, so what a burst posts leaves in one write (an ack a few
    milliseconds later costs nothing: JetStream waits ``EVENT_BUS_ACK_WAIT``).
    """

    def __init__(
        self,
        errors: tuple[type[BaseException], ...],
        sent: Callable[[], object] = lambda: None,
        *,
        linger: float = _ACK_LINGER,
    ) -> None:
        self._queue: deque[Send] = deque()
        self._wake = asyncio.Event()  # asyncio's (nats-py's loop): reused, made once
        self._errors = errors  # what a failed send may raise (logged, never fatal)
        self._sent = sent  # called after sending what was posted
        self._linger = linger

    def post(self, send: Send) -> None:
        self._queue.append(send)
        self._wake.set()

    async def run(self) -> None:
        """Send what is posted, until cancelled."""
        wake = self._wake
        while True:
            await wake.wait()
            if self._linger:
                await asyncio.sleep(self._linger)
            wake.clear()
            await self.flush()

    async def flush(self) -> None:
        queue = self._queue
        if not queue:
            return
        while queue:
            send = queue.popleft()
            try:
                await send()
            except self._errors as exc:  # an unacked event is offered again after the ack wait
                _log.warning("event_bus_nats_send_failed", error=f"{type(exc).__name__}: {exc}")
        self._sent()


class Handled:
    """The events one consumer is handling, and the last ones it finished (bounded)."""

    __slots__ = ("_size", "done", "working")

    def __init__(self, size: int = _REMEMBERED) -> None:
        self._size = size
        self.working: set[str] = set()
        self.done: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first

    def finished(self, event_id: str) -> None:
        self.working.discard(event_id)
        done = self.done
        done[event_id] = None
        if len(done) > self._size:
            del done[next(iter(done))]


class Acks:
    """The events a replica holds, until each is acked or handed back."""

    def __init__(self, outbox: Outbox, *, ack_wait: float, publish_timeout: float) -> None:
        self._outbox = outbox
        self._ack_wait = ack_wait
        self._publish_timeout = publish_timeout
        self.held: dict[Delivery, Message] = {}
        self.waiting: dict[int, Message] = {}  # arrived, not held yet (by id: Msg is unhashable)
        self.dead_letters: dict[tuple[str, str], list[Delivery]] = {}  # (event id, subscriber)
        self.duplicates = 0  # redelivered copies of events handled (or in hand) here
        self._consumers: dict[Delivery, Handled] = {}

    def arrived(self, msg: Message) -> None:
        """``msg`` reached this replica and waits for its turn: kept alive until :meth:`taken`."""
        self.waiting[id(msg)] = msg

    def taken(self, msg: Message) -> None:
        """``msg`` was held, or acked or handed back without being held."""
        self.waiting.pop(id(msg), None)

    def duplicate(self, event: Event, msg: Message, handled: Handled) -> bool:
        """Whether ``msg`` is a copy of an event ``handled`` finished or has in hand.

        A finished one is acked again (its ack may be what got lost); a copy of one
        in hand is dropped: the copy in hand settles the stream's message.
        """
        if event.id in handled.done:
            self._outbox.post(msg.ack)
        elif event.id not in handled.working:
            return False
        self.duplicates += 1
        self.taken(msg)
        _log.info("event_bus_nats_duplicate_skipped", event_id=event.id, event_name=event.name)
        return True

    def hold(self, event: Event, count: int, msg: Message, handled: Handled) -> Delivery:
        """``msg`` goes to ``count`` local subscriptions; settled once they all report."""
        self.taken(msg)
        delivery = Delivery(event, count, partial(self._settle, msg))
        self.held[delivery] = msg
        self._consumers[delivery] = handled
        handled.working.add(event.id)
        return delivery

    def outcome(self, delivery: Delivery, sub: Subscription) -> EventOutcome:
        """The :class:`~tools.event_bus._backend.Reply` that ``sub``'s consumer reports to."""
        return EventOutcome(delivery, sub, self._awaiting_dead_letter)

    def _settle(self, msg: Message, delivery: Delivery, redeliver: bool) -> None:
        self.held.pop(delivery, None)
        handled = self._consumers.pop(delivery, None)
        if handled is not None:
            if redeliver:
                handled.working.discard(delivery.event.id)
            else:
                handled.finished(delivery.event.id)
        self._outbox.post(msg.nak if redeliver else msg.ack)

    def _awaiting_dead_letter(self, delivery: Delivery, subscriber: str) -> None:
        self.dead_letters.setdefault((delivery.event.id, subscriber), []).append(delivery)

    def dead_letter_stored(self, letter: Event) -> None:
        delivery = self._dead_letter_for(letter)
        if delivery is not None:
            delivery.dead_lettered()

    def dead_letter_lost(self, letter: Event) -> None:
        """The dead letter was not stored: the event stays unacked, offered again later."""
        delivery = self._dead_letter_for(letter)
        if delivery is not None:
            self._forget(delivery)

    def _dead_letter_for(self, letter: Event) -> Delivery | None:
        subscriber = letter.payload.get("subscriber") if type(letter.payload) is dict else None
        key = (letter.parent_id or "", str(subscriber))
        waiting = self.dead_letters.get(key)
        if not waiting:
            return None
        delivery = waiting.pop(0)
        if not waiting:
            del self.dead_letters[key]
        return delivery

    def _forget(self, delivery: Delivery) -> None:
        """Stop holding ``delivery``: unacked, JetStream offers it again after the ack wait."""
        self.held.pop(delivery, None)
        handled = self._consumers.pop(delivery, None)
        if handled is not None:
            handled.working.discard(delivery.event.id)
        for key, waiting in tuple(self.dead_letters.items()):
            if delivery in waiting:
                waiting.remove(delivery)
                if not waiting:
                    del self.dead_letters[key]

    async def keep_alive(self) -> None:
        """Every third of the ack wait, say the held and waiting events are being worked on.

        An event whose dead letter did not come within the publish timeout is let
        go: JetStream offers it again after the ack wait.
        """
        while True:
            await anyio.sleep(self._ack_wait / 3)
            give_up = time.monotonic() - self._publish_timeout - self._ack_wait
            for delivery, msg in tuple(self.held.items()):
                if delivery.handled_at and delivery.handled_at < give_up:
                    self._forget(delivery)
                else:
                    self._outbox.post(msg.in_progress)
            for msg in tuple(self.waiting.values()):
                self._outbox.post(msg.in_progress)
