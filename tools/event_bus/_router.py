"""The bus proper: events made, sent and dead-lettered; subscriptions owned by plugins.

:class:`Router` is the one object a plugin's :class:`~._handle.EventBus` talks
to (``publish``, ``request``, ``subscribe``, ``release``), and what the tool
drives through the app's life (``open``, ``plugins_changed``, ``drain``). It
checks names and payloads, stamps ids and causality, keeps history and the
flow graph, opens and closes subscriptions (their buffers in ``_fanout``,
their consumer tasks in ``_delivery``) and hands events to the backend.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import structlog

from microcore import Event
from microcore.events import DLQ_PREFIX, check_name, check_pattern
from microcore.tooling import (
    TRACING,
    Owner,
    RegistrationError,
    causation,
    current_correlation_id,
    current_event_id,
    require_coroutine_function,
)

from ._backend import EventBackend, Publisher
from ._delivery import Deliverer
from ._errors import BusClosed, EventPayloadError
from ._fanout import EventHandler, Fanout, Subscription
from ._history import Graph, History
from ._settings import BusSettings
from ._stats import SubscriptionState
from ._tracing import attributes
from .memory import MemoryBackend

__all__ = ("SOURCE", "Router", "Start")

SOURCE = "event_bus"  # the source of events the bus publishes itself (dead letters)
_KNOWN_NAMES = 10_000  # validated names remembered (bounds memory for ever-new names)

Start = Callable[..., None]  # KernelView.start_background(fn, *args, name=...)
Tap = Callable[[Event], object]

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")


class Router:
    """Routes events from publishers to subscriptions, locally or through the backend."""

    def __init__(self, start_background: Start) -> None:
        self.start_background = start_background
        self.graph = Graph()
        self.taps: list[Tap] = []
        self.owned: dict[Owner, list[Subscription]] = {}
        self._names: set[str] = set()
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)
        self.accepting = False
        self.drained = False
        self._watchdog = False
        self.drain_timeout = 5.0
        self.history = History(1000)
        self.backend: EventBackend = MemoryBackend()
        self.fanout = Fanout(buffer=1024, publish_timeout=30.0)
        self.deliverer = self._make_deliverer(timeout=30.0, backoff=0.1)
        self._send: Publisher = self.fanout.dispatch

    def _make_deliverer(self, *, timeout: float, backoff: float) -> Deliverer:
        return Deliverer(
            fanout=self.fanout,
            timeout=timeout,
            backoff=backoff,
            dead_letter=self._dead_letter,
            responded=self.graph.responded,
        )

    # -- the app's life (the tool calls these) -------------------------------------------

    async def open(self, settings: BusSettings, backend: EventBackend) -> None:
        """Apply ``settings``, connect ``backend`` and start taking events."""
        self.backend = backend
        self.drain_timeout = settings.drain_timeout
        self.history = History(settings.history)
        self.fanout = Fanout(buffer=settings.buffer, publish_timeout=settings.publish_timeout)
        self.deliverer = self._make_deliverer(
            timeout=settings.delivery_timeout, backoff=settings.retry_backoff
        )
        await backend.open(self.fanout)
        self._send = backend.publisher()
        self.accepting = True

    def plugins_changed(self) -> None:
        """Open the subscriptions of owners that became active; close released owners' ones."""
        for owner, subs in list(self.owned.items()):
            if owner.active:
                for sub in subs:
                    if sub.state is SubscriptionState.PENDING:
                        self._open(sub)
            elif owner.released:
                for sub in subs:
                    self._close(sub)

    async def drain(self) -> None:
        """Stop taking new events; let queued ones (and the events they cause) finish in
        ``EVENT_BUS_DRAIN_TIMEOUT``; cancel and log what is left; close the backend."""
        if self.drained:
            return
        self.drained = True
        self.accepting = False
        fanout = self.fanout
        with anyio.move_on_after(self.drain_timeout) as deadline:
            while fanout.outstanding > 0:
                fanout.idle = anyio.Event()
                await fanout.idle.wait()
        fanout.idle = None
        left = fanout.outstanding
        running = set(self.deliverer.consumers)
        for subs in list(self.owned.values()):
            for sub in subs:
                self._close(sub)
                if sub.state is SubscriptionState.CLOSING:
                    running.add(sub)
        if deadline.cancelled_caught:
            _log.warning("event_bus_drain_timeout", seconds=self.drain_timeout, left=left)
            for sub in running:
                sub.scope.cancel()
        with anyio.move_on_after(self.drain_timeout):
            for sub in running:
                await sub.done.wait()
        self.deliverer.stop()
        await self.backend.close()

    # -- what a plugin's handle calls ----------------------------------------------------

    def published_by(self, source: str) -> set[str]:
        """The live set of names ``source`` published or requested (the flow graph)."""
        return self.graph.published_by(source)

    async def publish(self, name: str, payload: Any, source: str) -> str:
        """Make the event and queue it for every subscriber; its id."""
        if TRACING.enabled:
            return await self._traced_publish(name, payload, source)
        event = self._event(name, payload, source)
        await self._send(event)
        return event.id

    async def request(self, name: str, payload: Any, source: str, timeout: float) -> Any:
        """Make the event and return the first reply to it."""
        if TRACING.enabled:
            return await self._traced_request(name, payload, source, timeout)
        event = self._event(name, payload, source)
        return await self.backend.request(event, timeout)

    async def _traced_publish(self, name: str, payload: Any, source: str) -> str:
        with TRACING.span(f"{name} publish", kind="producer", attributes=attributes(name, source)):
            event = self._event(name, payload, source, TRACING.traceparent())
            await self._send(event)
            return event.id

    async def _traced_request(self, name: str, payload: Any, source: str, timeout: float) -> Any:
        with TRACING.span(f"{name} request", kind="client", attributes=attributes(name, source)):
            event = self._event(name, payload, source, TRACING.traceparent())
            return await self.backend.request(event, timeout)

    def subscription(
        self, owner: Owner, pattern: str, handler: EventHandler, retries: int
    ) -> Subscription:
        """A checked, not yet tracked subscription (see :meth:`track`)."""
        require_coroutine_function(
            handler, what=f"event handler for {pattern!r} of plugin {owner.identity!r}"
        )
        check_pattern(pattern)
        if type(retries) is not int or retries < 0:
            raise RegistrationError(
                f"retries for {pattern!r} of plugin {owner.identity!r} must be an int >= 0, "
                f"got {retries!r}"
            )
        return Subscription(owner, pattern, handler, retries)

    def track(self, sub: Subscription) -> None:
        """Own ``sub`` under its plugin; it receives once the plugin is active."""
        self.owned.setdefault(sub.owner, []).append(sub)
        if sub.owner.active:
            self._open(sub)

    async def release(self, sub: Subscription) -> None:
        """Undo a subscription: no new events; the backlog gets ``EVENT_BUS_DRAIN_TIMEOUT``."""
        try:
            if sub.owner.released:  # unloading: all of the plugin's subscriptions stop at once
                for other in self.owned.get(sub.owner, ()):
                    self._close(other)
            self._close(sub)
            if sub.state is SubscriptionState.CLOSED or sub.task_id == anyio.get_current_task().id:
                return  # never started, or unsubscribing from inside its own handler
            with anyio.move_on_after(self.drain_timeout):
                await sub.done.wait()
            if not sub.done.is_set():
                _log.warning(
                    "subscription_release_timeout",
                    subscriber=sub.identity,
                    pattern=sub.pattern,
                    seconds=self.drain_timeout,
                )
                sub.scope.cancel()
                with anyio.move_on_after(self.drain_timeout):
                    await sub.done.wait()
        finally:
            subs = self.owned.get(sub.owner)
            if subs is not None and sub in subs:
                subs.remove(sub)
                if not subs:
                    del self.owned[sub.owner]

    # -- inside ------------------------------------------------------------------------

    def _event(self, name: str, payload: Any, source: str, traceparent: str | None = None) -> Event:
        parent = current_event_id()
        if not self.accepting and parent is None:
            raise BusClosed(
                f"the event bus is {'shutting down' if self.drained else 'not set up'}; "
                f"{name!r} from {source!r} was not published"
            )
        if name not in self._names:
            check_name(name)
            if len(self._names) < _KNOWN_NAMES:
                self._names.add(name)
        if type(payload) is not dict and not isinstance(payload, msgspec.Struct):
            raise EventPayloadError(
                f"payload of {name!r} must be a dict or a msgspec Struct, "
                f"got {type(payload).__name__}"
            )
        event = Event(
            name=name,
            payload=payload,
            id=f"{self._prefix}{next(self._counter):016x}",
            correlation_id=current_correlation_id() or f"{self._prefix}{next(self._counter):016x}",
            source=source,
            timestamp=time.time(),
            parent_id=parent,
            traceparent=traceparent,
        )
        self.history.append(event)
        if self.taps:
            self._notify(event)
        return event

    def _notify(self, event: Event) -> None:
        for tap in tuple(self.taps):
            try:
                tap(event)
            except Exception:  # noqa: BLE001 - isolation boundary: an observer must not break publish
                _log.exception("event_tap_failed", event_name=event.name, event_id=event.id)

    def _open(self, sub: Subscription) -> None:
        if self.drained:
            self.fanout.close(sub)
            return
        self.fanout.open(sub)
        try:
            if not self._watchdog:
                self.start_background(self.deliverer.watch, name="event_bus:watchdog")
                self._watchdog = True
            self.start_background(
                self.deliverer.consume, sub, name=f"event_bus:{sub.identity}:{sub.pattern}"
            )
        except Exception:
            self.fanout.close(sub)
            if sub.receive is not None:
                sub.receive.close()
            raise
        self.backend.watch(sub.pattern, sub.identity)

    def _close(self, sub: Subscription) -> None:
        """Stop ``sub`` receiving new events (its consumer finishes the backlog)."""
        if sub.state is SubscriptionState.ACTIVE:
            self.backend.unwatch(sub.pattern, sub.identity)
        self.fanout.close(sub)

    async def _dead_letter(
        self, sub: Subscription, event: Event, error: BaseException, attempts: int
    ) -> None:
        fields = {
            "event_name": event.name,
            "event_id": event.id,
            "subscriber": sub.identity,
            "attempts": attempts,
        }
        if event.name.startswith(DLQ_PREFIX):
            _log.error("dead_letter_not_requeued", **fields)  # no _dlq._dlq. chains
            return
        try:
            payload = {
                "event": msgspec.to_builtins(event),
                "error": f"{type(error).__name__}: {error}",
                "attempts": attempts,
                "subscriber": sub.identity,
            }
            with causation(event.correlation_id, event.id):
                await self.publish(DLQ_PREFIX + event.name, payload, SOURCE)
        except Exception:  # noqa: BLE001 - isolation boundary: a dead letter must not kill the consumer
            _log.exception("dead_letter_failed", **fields)
            return
        _log.warning("event_dead_lettered", **fields)
