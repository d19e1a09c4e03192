"""Delivery: the consumer task of one subscription, with deadlines, retries and dead letters.

Each handler call is one isolated delivery: it runs inside the event's causal
context (what it publishes shares the event's correlation id and has the event
as parent), and whatever it raises is logged with the event id and traceback.
A failed delivery is retried ``retries`` times, waiting 0.1 s, 0.2 s, 0.4 s ...
(``EVENT_BUS_RETRY_BACKOFF``), then the event goes to ``_dlq.<name>``. None of
this touches the publisher or other subscribers: each subscription has its own
task.

Deadlines: a handler call that runs past ``EVENT_BUS_DELIVERY_TIMEOUT`` is
cancelled and counts as a failed attempt. One watchdog task per bus checks the
running calls (every quarter of the timeout, at most every second) instead of
arming a timer per event, which would cost more than the rest of a delivery.

A consumer that is cancelled (unload past its grace period, drain past its
deadline) stops at once; the event it was handling and everything still
queued are logged as undelivered, never handed to anyone later: a delivery is
never half-run twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import cast

import anyio
import anyio.lowlevel
import structlog

from microcore import Event
from microcore.tooling import TRACING, causation

from ._contracts import event_as
from ._errors import BusClosed, DeliveryTimeout, EventPayloadError
from ._fanout import RESPOND, Fanout, Item, Request, Subscription
from ._stats import SubscriptionState
from ._tracing import traced_delivery

__all__ = ("Deliverer", "who")

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")

_BATCH = 64  # events handled back to back before the consumer yields to other tasks
_LOGGED_IDS = 20  # event ids listed in an "undelivered" log line
MAX_COUNTED = 10_000  # (event name, subscriber) pairs counted; past it, new names count as OTHER
OTHER = "_other"

DeadLetter = Callable[[Subscription, Event, BaseException, int], Awaitable[None]]
Responded = Callable[[str, str], None]


class Deliverer:
    """Runs the consumers and their watchdog; one instance per bus."""

    def __init__(
        self,
        *,
        fanout: Fanout,
        timeout: float,
        backoff: float,
        dead_letter: DeadLetter,
        responded: Responded,
    ) -> None:
        self._fanout = fanout
        self.timeout = timeout
        self.backoff = backoff
        self._dead_letter = dead_letter
        self._responded = responded
        self.consumers: set[Subscription] = set()
        self._watching: anyio.CancelScope | None = None
        # [delivered, failed] by (event name, subscriber identity); kept across hot reloads
        self.outcomes: dict[tuple[str, str], list[int]] = {}

    # -- the watchdog ----------------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watching is not None

    async def watch(self) -> None:
        """Cancel handler calls that overran the delivery timeout, until :meth:`stop`."""
        tick = min(self.timeout / 4, 1.0)
        with anyio.CancelScope() as self._watching:
            while True:
                await anyio.sleep(tick)
                self.check(time.monotonic())

    def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()

    def check(self, now: float) -> None:
        limit = self.timeout
        for sub in self.consumers:
            since, guard = sub.since, sub.guard
            if since and now - since > limit and guard is not None and not guard.cancel_called:
                guard.cancel()

    # -- one consumer ----------------------------------------------------------------

    async def consume(self, sub: Subscription) -> None:
        """Handle ``sub``'s events in order until its buffer is closed and empty, or cancelled.

        Handler calls run inside ``sub.guard``, a cancel scope that lives across
        many deliveries; the watchdog cancels it when a call overruns. The
        consumer then opens a fresh guard and carries on with the same item,
        counting the cut-short call as a failed attempt.
        """
        sub.task_id = anyio.get_current_task().id
        self.consumers.add(sub)
        held: list[Item] = []  # the item in hand (at most one), shared with ``finally``
        try:
            with sub.scope:
                while True:
                    guard = sub.guard = anyio.CancelScope()
                    with guard:
                        if held:  # resume the item whose guard was renewed
                            if not await self._deliver(sub, held[0], guard, sub.attempt, sub.error):
                                continue
                            held.clear()
                            self._fanout.settle(1)
                            if guard.cancel_called:
                                continue
                        if await self._run(sub, guard, held):
                            break
                    if guard.cancelled_caught and held:
                        sub.since = 0.0  # the watchdog cut the call in hand short
                        sub.error = self._overrun(sub, held[0])
        except Exception:  # noqa: BLE001 - isolation boundary: a consumer must not take the kernel down
            _log.exception("event_consumer_crashed", subscriber=sub.identity, pattern=sub.pattern)
        finally:
            self.consumers.discard(sub)
            sub.since = 0.0
            self._abandon(sub, held)

    async def _run(self, sub: Subscription, guard: anyio.CancelScope, held: list[Item]) -> bool:
        """Deliver items until the stream ends (True) or ``guard`` must be renewed (False)."""
        receive = sub.receive
        if receive is None:  # pragma: no cover - opened before the task starts
            return True
        settle = self._fanout.settle
        batch = 0
        while True:
            if batch >= _BATCH:
                batch = 0
                await anyio.lowlevel.checkpoint()
            try:
                item = receive.receive_nowait()
                batch += 1
            except anyio.WouldBlock:
                batch = 0
                await sub.next_item()  # woken by whoever queues an item or closes the buffer
                continue
            except anyio.EndOfStream:
                return True
            if sub.room is not None:
                sub.made_room()
            held.append(item)
            if not await self._deliver(sub, item, guard):
                return False
            held.clear()
            settle(1)
            if guard.cancel_called:
                return False  # a handler swallowed the watchdog's cancellation

    def _outcome(self, name: str, identity: str) -> list[int]:
        """The ``[delivered, failed]`` counters of ``name`` handled by ``identity``."""
        outcomes = self.outcomes
        counts = outcomes.get((name, identity))
        if counts is None:
            key = (name if len(outcomes) < MAX_COUNTED else OTHER, identity)
            counts = outcomes.setdefault(key, [0, 0])
        return counts

    def _overrun(self, sub: Subscription, item: Item) -> DeliveryTimeout:
        event = item if type(item) is Event else item.event  # type: ignore[union-attr]
        handler = getattr(sub.handler, "__qualname__", None) or repr(sub.handler)
        return DeliveryTimeout(
            f"handler {handler} of {sub.identity!r} did not finish {event.name!r} within "
            f"{self.timeout} s (EVENT_BUS_DELIVERY_TIMEOUT) and was cancelled"
        )

    async def _deliver(
        self,
        sub: Subscription,
        item: Item,
        guard: anyio.CancelScope,
        attempt: int = 1,
        error: BaseException | None = None,
    ) -> bool:
        """Call the handler until it succeeds or runs out of retries (True when done).

        ``error`` is how attempt ``attempt`` already failed (when resuming). Returns
        False, with the state kept on ``sub``, when a call ended after the watchdog
        cancelled ``guard``: nothing more may be awaited inside that guard.
        """
        if type(item) is Event:
            event, request = item, None
        else:
            request = cast(Request, item)
            event = request.event
        while True:
            if error is None:
                sub.attempt = attempt
                sub.since = time.monotonic()
                owner = sub.owner
                owner.enter()  # a reload shuts the old version down only after this call
                try:
                    with causation(event.correlation_id, event.id):
                        typed = sub.payload_type
                        if typed is not None:
                            event = event_as(event, typed, who(sub))
                        if TRACING.enabled:
                            with traced_delivery(event, sub.identity, attempt):
                                result = await sub.handler(event)
                        else:
                            result = await sub.handler(event)
                except Exception as exc:  # noqa: BLE001 - isolation boundary: one event delivery
                    error = exc
                finally:
                    owner.leave()
                sub.since = 0.0  # not in a ``finally``: stays set when the call is cancelled
                if error is None:
                    sub.delivered += 1
                    self._outcome(event.name, sub.identity)[0] += 1
                    if request is not None:
                        request.reported = True
                        final = sub.mode == RESPOND  # a responder's None is a reply too
                        if request.reply.answer(result, sub.identity, final=final):
                            self._responded(event.name, sub.identity)
                    return True
                if guard.cancel_called:
                    sub.error = error
                    return False
            _log.error(
                "event_handler_failed",
                event_name=event.name,
                event_id=event.id,
                subscriber=sub.identity,
                pattern=sub.pattern,
                attempt=attempt,
                attempts=sub.retries + 1,
                exc_info=error,
            )
            # a payload that breaks the contract fails the same way again: no retries
            if attempt <= sub.retries and not isinstance(error, EventPayloadError):
                await anyio.sleep(self.backoff * 2 ** (attempt - 1))
                attempt += 1
                error = None
                continue
            sub.failed += 1
            self._outcome(event.name, sub.identity)[1] += 1
            if request is not None:
                request.reported = True  # reported once, also if dead-lettering is cut short
                request.reply.fail(error, sub.identity)
            await self._dead_letter(sub, event, error, attempt)
            return True

    def _abandon(self, sub: Subscription, held: list[Item]) -> None:
        """Close the buffer; log (and fail) whatever was not delivered. Never awaits."""
        left = list(held)
        receive = sub.receive
        if receive is not None:
            while True:
                try:
                    left.append(receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            receive.close()
        if sub.send is not None:
            sub.send.close()
        sub.made_room()
        sub.state = SubscriptionState.CLOSED
        sub.done.set()
        if not left:
            return
        self._fanout.settle(len(left))
        # a request whose handler already answered or failed was handled (its dead letter
        # may have been cut short): neither reported again nor listed as undelivered
        left = [i for i in left if not (type(i) is Request and i.reported)]
        if not left:
            return
        events = [i if type(i) is Event else i.event for i in left]  # type: ignore[union-attr]
        for item in left:
            if isinstance(item, Request):
                item.reply.fail(
                    BusClosed(f"{sub.identity!r} stopped before handling {item.event.name!r}"),
                    sub.identity,
                )
        _log.error(
            "events_undelivered",
            subscriber=sub.identity,
            pattern=sub.pattern,
            count=len(events),
            event_ids=[e.id for e in events[:_LOGGED_IDS]],
            names=sorted({e.name for e in events}),
        )


def who(sub: Subscription) -> str:
    """``handler on_placed of orders.ShipPlugin``: who declared a payload type."""
    handler = getattr(sub.handler, "__name__", None) or repr(sub.handler)
    return f"handler {handler} of {sub.identity}"
