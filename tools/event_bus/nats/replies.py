"""The bus's reply seam for events and requests that arrive over a network transport.

The consumer tasks (``../_delivery.py``) report how each item they were given ended
through a :class:`~tools.event_bus._backend.Reply`. For events and requests that came from NATS,
those reports turn into transport acknowledgements:

* :class:`Delivery` / :class:`EventOutcome`: one JetStream message, queued to the
  one or more local subscriptions of the consumer it came from. It is acked once
  every one of them finished (a failure counts once its dead letter is stored),
  and nak'ed (redelivered at once, possibly to another replica) when one of them
  was abandoned at shutdown or unload.
* :class:`RemoteReply`: one request served here; the outcome goes back to the
  requester's inbox, through :class:`Answers` (one task sending claims and outcomes
  as soon as the event loop comes round to it).
* :class:`RemoteWaiter`: one request sent from here, collecting the replies.

:func:`queue_to` puts an item into one subscription's buffer, with the same
backpressure and accounting as the bus's own fan-out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog

from microcore import Event
from microcore.events import DLQ_PREFIX
from microcore.tooling import NoResponder, RequestTimeout

from .._errors import RequestFailed
from .._fanout import Fanout, Item, Subscription
from .._stats import SubscriptionState
from .wire import CLAIM, FAILED, GONE, NONE, VALUE, ReplyFrame, encode_outcome, encode_reply

__all__ = (
    "Answers",
    "Delivery",
    "EventOutcome",
    "RemoteReply",
    "RemoteWaiter",
    "offer",
    "queue_to",
)

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")

CLAIM_GRACE = 0.1  # s without a new claim before "every responder finished" is believed


def offer(fanout: Fanout, sub: Subscription, item: Item) -> bool | None:
    """Queue ``item`` for ``sub`` if it fits now: True if queued, False if ``sub`` left,
    None when its buffer is full (then nothing changed: :func:`queue_to` waits for room)."""
    send = sub.send
    if send is None:
        return False
    try:
        send.send_nowait(item)
    except anyio.WouldBlock:
        return None
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        return False
    sub.wake()
    fanout.outstanding += 1
    return True


async def queue_to(fanout: Fanout, sub: Subscription, item: Item) -> bool:
    """Queue ``item`` for ``sub`` alone (waiting for room, as publish does); False if it left."""
    send = sub.send
    if send is None:
        return False
    fanout.outstanding += 1
    try:
        send.send_nowait(item)
        sub.wake()
    except anyio.WouldBlock:
        # the fan-out's own backpressure wait (and its PublishTimeout)
        return await fanout.wait_for_room(sub, send, item)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        fanout.settle(1)
        return False
    return True


class Delivery:
    """One JetStream message handed to ``count`` local subscriptions."""

    __slots__ = ("abandoned", "dead_letters", "event", "finish", "handled_at", "left")

    def __init__(self, event: Event, count: int, finish: Callable[[Delivery, bool], None]) -> None:
        self.event = event
        self.left = count  # subscriptions that have not reported yet
        self.dead_letters = 0  # failures whose dead letter is not stored yet
        self.abandoned = False
        self.finish = finish  # called once: (delivery, redeliver)
        self.handled_at = 0.0  # monotonic time every subscription had reported

    def report(self, *, abandoned: bool = False, dead_letter: bool = False) -> None:
        self.left -= 1
        self.abandoned |= abandoned
        self.dead_letters += dead_letter
        if self.left == 0:
            self.handled_at = time.monotonic()
        self._check()

    def dead_lettered(self) -> None:
        """A dead letter for this event was stored."""
        self.dead_letters -= 1
        self._check()

    def _check(self) -> None:
        if self.left == 0 and (self.abandoned or self.dead_letters == 0):
            self.left = -1  # finish once
            self.finish(self, self.abandoned)


class EventOutcome:
    """How one subscription ended with one JetStream event (the consumer's report)."""

    __slots__ = ("_on_failure", "delivery", "sub")

    def __init__(
        self, delivery: Delivery, sub: Subscription, on_failure: Callable[[Delivery, str], None]
    ) -> None:
        self.delivery = delivery
        self.sub = sub
        self._on_failure = on_failure

    @property
    def open(self) -> bool:
        return True

    def expect(self, responders: int) -> None:
        """Events have no requester waiting."""

    def answer(self, value: Any, responder: str, *, final: bool = False) -> bool:
        self.delivery.report()
        return False  # a return value answers requests only

    def fail(self, error: BaseException, responder: str) -> None:
        if self.sub.state is SubscriptionState.CLOSED:  # abandoned: unloaded or shut down first
            self.delivery.report(abandoned=True)
        elif self.delivery.event.name.startswith(DLQ_PREFIX):  # the bus does not requeue these
            self.delivery.report()
        else:  # a dead letter follows; ack once it is stored
            self._on_failure(self.delivery, responder)
            self.delivery.report(dead_letter=True)


Publish = Callable[[str, bytes], Awaitable[object]]


class Answers:
    """The frames this replica sends to requesters (claims, outcomes), in order: one task.

    Sync code posts them (:meth:`post`); the task sends what is queued once the
    event loop comes round to it, so a responder that answers at once (in the
    same loop turn its request was claimed) sends both frames in one write. A
    claim not sent yet when its request's value is posted is dropped: a value
    answers the requester by itself (a claim tells it to wait for an outcome),
    so a quick answer is one message instead of two, as with bare NATS request/reply.
    """

    def __init__(self, errors: tuple[type[BaseException], ...]) -> None:
        # (requester inbox, frame, kind); a claim's frame is made when sent (most are dropped)
        self._queue: list[tuple[str, bytes | str, int]] = []
        self._wake = asyncio.Event()  # asyncio's (nats-py's loop): reused, made once
        self._errors = errors  # what a failed send may raise (logged: the requester times out)

    def post(self, to: str, data: bytes, kind: int) -> None:
        queue = self._queue
        if kind == VALUE:
            for index in range(len(queue) - 1, -1, -1):
                if queue[index][0] == to and queue[index][2] == CLAIM:
                    del queue[index]
                    break
        queue.append((to, data, kind))
        self._wake.set()

    def claim(self, to: str, responder: str) -> None:
        """Post ``responder``'s claim of the request whose requester listens at ``to``."""
        self._queue.append((to, responder, CLAIM))
        self._wake.set()

    async def run(self, publish: Publish) -> None:
        """Send what is posted with ``publish``, until cancelled."""
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            await self.flush(publish)

    async def flush(self, publish: Publish) -> None:
        queue, self._queue = self._queue, []
        for to, data, _kind in queue:
            try:
                await publish(to, encode_reply(CLAIM, data) if isinstance(data, str) else data)
            except self._errors as exc:
                _log.warning("event_bus_nats_send_failed", error=f"{type(exc).__name__}: {exc}")


class RemoteReply:
    """One request served here: claim it, then send exactly one outcome to the requester."""

    __slots__ = ("_deadline", "_open", "_send", "_to")

    def __init__(self, to: str, timeout: float, send: Callable[[str, bytes, int], None]) -> None:
        self._to = to
        self._deadline = time.monotonic() + timeout
        self._send = send  # queues a frame (``Answers.post``: replies are sent from sync code)
        self._open = True

    @property
    def open(self) -> bool:
        return self._open and time.monotonic() < self._deadline

    def expect(self, responders: int) -> None:
        """The requester counts claims itself."""

    def answer(self, value: Any, responder: str, *, final: bool = False) -> bool:
        if not self.open:
            self._open = False
            return False
        self._open = False
        if value is None and not final:
            self._send(self._to, encode_reply(NONE, responder), NONE)
            return False
        kind, data = encode_outcome(VALUE, responder, value)
        self._send(self._to, data, kind)
        return True

    def fail(self, error: BaseException, responder: str) -> None:
        if self.open:
            self._send(self._to, encode_reply(FAILED, responder, error=_describe(error)), FAILED)
        self._open = False


class RemoteWaiter:
    """A request sent from here: the first VALUE wins.

    Responders claim a request as it reaches them, before running anything, so
    the requester knows how many outcomes to expect. When every claimed
    responder finished without a value and no new claim came for
    :data:`CLAIM_GRACE`, the request ends: ``None``, or ``RequestFailed`` if any
    of them failed, as on the in-process bus. When it reached only replicas that
    were leaving the subscription (GONE), it is :attr:`refused`: the requester
    sends it again (:meth:`again`) until a live replica claims it or none is left.

    The waits run on asyncio directly (nats-py's own loop; this backend runs on
    nothing else): one future per wake-up and one timer for the request's
    deadline (:meth:`expire`), instead of an anyio event and cancel scope per
    request, which look the async backend up each time they are made.
    """

    __slots__ = (
        "_paused",
        "_wake",
        "answered",
        "claimed",
        "error",
        "expired",
        "finished",
        "gone",
        "last_claim",
        "no_responders",
        "responder",
        "retries",
        "value",
    )

    def __init__(self) -> None:
        self._wake: asyncio.Future[None] | None = None  # what :meth:`wait` awaits, if waiting
        self._paused: asyncio.Future[None] | None = None  # what :meth:`pause` awaits
        self.claimed = 0
        self.finished = 0
        self.gone = 0
        self.retries = 0  # times the request was sent again after it was refused
        self.last_claim = time.monotonic()
        self.no_responders = False
        self.expired = False  # the requester's timeout passed
        self.answered = False
        self.value: Any = None
        self.responder: str | None = None
        self.error: str | None = None

    def _changed(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def expire(self) -> None:
        """The request's timeout passed: :meth:`wait` and :meth:`pause` return at once."""
        self.expired = True
        self._changed()
        if self._paused is not None:
            _resolve(self._paused)

    def nobody(self) -> None:
        """NATS said nothing subscribes to the request's subject."""
        self.no_responders = True
        self._changed()

    def received(self, frame: ReplyFrame) -> None:
        kind = frame.kind
        if kind == CLAIM:
            self.claimed += 1
            self.last_claim = time.monotonic()
        elif kind == VALUE:
            if not self.answered:
                self.answered = True
                self.value, self.responder = frame.value, frame.responder
        elif kind == GONE:
            self.gone += 1
            self.last_claim = time.monotonic()
        else:
            self.finished += 1
            if kind == FAILED:
                self.error = frame.error or "unknown error"
        self._changed()

    @property
    def refused(self) -> bool:
        """Only replicas that had just let go of the subscription got the request."""
        return not (self.answered or self.no_responders or self.claimed) and self.gone > 0

    def again(self) -> None:
        """The refused request is sent again: wait for the replies to the new copy."""
        self.retries += 1
        self.gone = 0
        self.last_claim = time.monotonic()

    async def wait(self) -> None:
        """Until answered, refused, every claimed responder finished (and none is coming),
        or expired."""
        while not (self.answered or self.no_responders or self.expired):
            if self.finished >= self.claimed and (self.claimed or self.gone):
                quiet = self.last_claim + CLAIM_GRACE - time.monotonic()
                if quiet <= 0:
                    return
                await self._sleep(quiet)
            else:
                await self._sleep(None)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the request expires meanwhile."""
        if self.expired:
            return
        loop = asyncio.get_running_loop()
        done = self._paused = loop.create_future()
        timer = loop.call_later(seconds, _resolve, done)
        try:
            await done
        finally:
            self._paused = None
            timer.cancel()

    async def _sleep(self, seconds: float | None) -> None:
        """Until :meth:`_changed` (a reply, or :meth:`expire`), or ``seconds`` passed."""
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = None if seconds is None else loop.call_later(seconds, _resolve, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    def outcome(self, event: Event, timeout: float, timed_out: bool) -> Any:
        """The reply, or the error the in-process bus raises in the same situation."""
        if self.answered:
            return self.value
        if self.no_responders or (not self.claimed and (self.gone or self.retries)):
            raise NoResponder(
                f"nothing responds to {event.name!r}, so no one can answer the request; "
                f"register a responder in any replica, e.g. "
                f"await event_bus.respond({event.name!r}, self.answer)"
            )
        if timed_out:
            raise RequestTimeout(
                f"no reply to request {event.name!r} (event {event.id}) within {timeout} s; "
                "the responder is slow or hung: raise the timeout or look at its logs "
                f"({self.claimed} responder(s) got it)"
            )
        if self.error is not None:
            raise RequestFailed(
                f"every responder to {event.name!r} (event {event.id}) failed; last error: "
                f"{self.error}"
            )
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
