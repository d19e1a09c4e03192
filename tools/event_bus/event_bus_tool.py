"""The ``event_bus`` tool: publish/subscribe and request/reply between plugins.

Plugins receive an :class:`~._handle.EventBus` bound to their identity (the
``source`` of what they publish); everything they subscribe is owned by them
and disappears when they unload. Underneath, a driver carries events: the
in-process memory driver by default (``EVENT_BUS_URL=memory://``), or NATS
with JetStream across replicas (``EVENT_BUS_URL=nats://host:4222``, ``_nats.py``).

Settings (all optional): ``EVENT_BUS_URL`` (``memory://``), ``EVENT_BUS_BUFFER``
(1024 events per subscription), ``EVENT_BUS_PUBLISH_TIMEOUT`` (30 s: how long
``publish`` waits for room in a full buffer before raising ``PublishTimeout``),
``EVENT_BUS_DELIVERY_TIMEOUT`` (30 s per handler call), ``EVENT_BUS_RETRY_BACKOFF``
(0.1 s, doubled per retry), ``EVENT_BUS_DRAIN_TIMEOUT`` (5 s to drain at shutdown,
and the grace an unloading plugin's queued events get), ``EVENT_BUS_HISTORY``
(1000 recent events). NATS only: ``EVENT_BUS_STREAM`` (``microcore``: stream name
and subject root), ``EVENT_BUS_ACK_WAIT`` (30 s before a dead replica's events go to
another), ``EVENT_BUS_RETENTION`` (7 days an event waits for a plugin with no replica up).

Module map: ``_patterns`` (names, ``*``/``>`` trie), ``_fanout``
(subscriptions and their bounded buffers), ``_delivery`` (consumer tasks,
deadlines, retries, dead letters), ``_driver`` (the transport seam),
``_memory`` (the in-process driver), ``_nats`` (the NATS driver, with ``_wire``
for subjects and frames and ``_remote`` for acks and replies), ``_history`` (recent events, graph),
``_handle`` (the plugin-facing API), ``_settings``, ``_errors``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import msgspec

from microcore import Event, Tool
from microcore.events import check_name, check_pattern
from microcore.tooling import (
    ConfigurationError,
    EventFlows,
    KernelView,
    Owner,
    RegistrationError,
    causation,
    current_correlation_id,
    current_event_id,
    require_coroutine_function,
)

from ._delivery import Deliverer, Log
from ._driver import Driver, Publisher
from ._errors import BusClosed, EventPayloadError
from ._fanout import Fanout, Handler, Subscription
from ._handle import EventBus
from ._history import Graph, History
from ._memory import MemoryDriver
from ._settings import BusSettings, Config, read_settings
from ._stats import DeliveryOutcome, SubscriptionState, SubscriptionStats

__all__ = ("EventBus", "EventBusTool")

DLQ_PREFIX = "_dlq."
SOURCE = "event_bus"  # the source of events the bus publishes itself (dead letters)
_KNOWN_NAMES = 10_000  # validated names remembered (bounds memory for ever-new names)


class _Logger(Protocol):
    def for_tool(self, name: str) -> Log: ...


def _driver_for(settings: BusSettings, bus: EventBusTool) -> Driver:
    url = settings.url
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryDriver()
    if scheme == "nats":
        try:
            from ._nats import NatsDriver  # nats-py is optional: only NATS users install it
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("nats"):
                raise
            raise ConfigurationError(
                f"EVENT_BUS_URL={url!r} needs nats-py: pip install 'microcore[nats]'"
            ) from exc
        return NatsDriver(
            settings,
            start_background=bus._kernel.start_background,
            log=bus._log,
            accepting=lambda: bus._accepting,
        )
    raise ConfigurationError(
        f"EVENT_BUS_URL={url!r} has an unknown scheme; use memory:// (the default) "
        "or nats://host:4222"
    )


class EventBusTool(Tool):
    """Event bus: in-process (``EVENT_BUS_URL=memory://``, the default) or NATS (``nats://``).

    Plugins receive a bound :class:`EventBus`: awaited ``publish(name, payload)``,
    ``subscribe(pattern, handler, *, retries=0)``, ``unsubscribe(pattern, handler)``,
    ``request(name, payload, timeout=5.0)``. Tools and tests use :meth:`tap`,
    :meth:`history`, :meth:`subscriptions`, :meth:`outcomes` and :meth:`flows` to observe it
    (it is a :class:`~microcore.tooling.EventSource`).
    """

    name = "event_bus"

    def __init__(self, config: Config, logger: _Logger, kernel: KernelView) -> None:
        self._config = config
        self._log = logger.for_tool("event_bus")
        self._kernel = kernel
        self._graph = Graph()
        self._taps: list[Callable[[Event], object]] = []
        self._owned: dict[Owner, list[Subscription]] = {}
        self._names: set[str] = set()
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)
        self._accepting = False
        self._drained = False
        self._watchdog = False
        self._drain_timeout = 5.0
        self._history = History(1000)
        self._driver: Driver = MemoryDriver()
        self._fanout = Fanout(buffer=1024, publish_timeout=30.0)
        self._deliverer = self._make_deliverer(timeout=30.0, backoff=0.1)
        self._send: Publisher = self._fanout.dispatch

    def _make_deliverer(self, *, timeout: float, backoff: float) -> Deliverer:
        return Deliverer(
            fanout=self._fanout,
            log=self._log,
            timeout=timeout,
            backoff=backoff,
            dead_letter=self._dead_letter,
            responded=self._graph.responded,
        )

    # -- lifecycle ---------------------------------------------------------------

    async def setup(self) -> None:
        settings = read_settings(self._config)
        self._driver = _driver_for(settings, self)
        self._drain_timeout = settings.drain_timeout
        self._history = History(settings.history)
        self._fanout = Fanout(buffer=settings.buffer, publish_timeout=settings.publish_timeout)
        self._deliverer = self._make_deliverer(
            timeout=settings.delivery_timeout, backoff=settings.retry_backoff
        )
        await self._driver.open(self._fanout)
        self._send = self._driver.publisher()
        self._accepting = True

    async def on_boot_complete(self) -> None:
        """Serve once the driver carries every subscription (NATS: queue groups joined)."""
        await self._driver.ready()

    def bind(self, owner: Owner) -> EventBus:
        return EventBus(self, owner)

    def on_plugins_changed(self) -> None:
        for owner, subs in list(self._owned.items()):
            if owner.active:
                for sub in subs:
                    if sub.state is SubscriptionState.PENDING:
                        self._open(sub)
            elif owner.released:
                for sub in subs:
                    self._close(sub)

    async def drain(self) -> None:
        """Stop taking new events; let queued ones (and the events they cause) finish in
        ``EVENT_BUS_DRAIN_TIMEOUT``; cancel and log what is left."""
        if self._drained:
            return
        self._drained = True
        self._accepting = False
        fanout = self._fanout
        with anyio.move_on_after(self._drain_timeout) as deadline:
            while fanout.outstanding > 0:
                fanout.idle = anyio.Event()
                await fanout.idle.wait()
        fanout.idle = None
        left = fanout.outstanding
        running = set(self._deliverer.consumers)
        for subs in list(self._owned.values()):
            for sub in subs:
                self._close(sub)
                if sub.state is SubscriptionState.CLOSING:
                    running.add(sub)
        if deadline.cancelled_caught:
            self._log.warning("event_bus_drain_timeout", seconds=self._drain_timeout, left=left)
            for sub in running:
                sub.scope.cancel()
        with anyio.move_on_after(self._drain_timeout):
            for sub in running:
                await sub.done.wait()
        self._deliverer.stop()
        await self._driver.close()

    async def shutdown(self) -> None:
        await self.drain()

    # -- observing (tools and tests) ------------------------------------------------

    def tap(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously for every event published; returns ``remove``.

        >>> remove = event_bus.tap(seen.append)
        """
        self._taps.append(callback)

        def remove() -> None:
            if callback in self._taps:
                self._taps.remove(callback)

        return remove

    def history(
        self, *, correlation_id: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Recent events (``EVENT_BUS_HISTORY`` of them), oldest first, with ``parent_id``."""
        return self._history.events(correlation_id=correlation_id, limit=limit)

    def chain(self, event_id: str) -> list[Event]:
        """The causal chain that led to ``event_id``, root first (as far as history reaches)."""
        return self._history.chain(event_id)

    def subscriptions(self) -> list[SubscriptionStats]:
        """Every subscription: subscriber, pattern, retries, state, queued/delivered/failed.

        >>> busy = [s for s in event_bus.subscriptions() if s.queued > 100]
        """
        rows = [
            SubscriptionStats(
                subscriber=sub.identity,
                pattern=sub.pattern,
                retries=sub.retries,
                state=sub.state,
                queued=sub.queued,
                delivered=sub.delivered,
                failed=sub.failed,
            )
            for subs in self._owned.values()
            for sub in subs
        ]
        return sorted(rows, key=lambda r: (r.subscriber, r.pattern))

    def outcomes(self) -> list[DeliveryOutcome]:
        """Handled events by event name and subscriber since boot: delivered, failed
        (every attempt failed). Kept across hot reloads; capped at 10,000 pairs, past
        which new names count under ``_other``.

        >>> failing = [(o.name, o.subscriber) for o in event_bus.outcomes() if o.failed]
        """
        rows = [
            DeliveryOutcome(name=name, subscriber=identity, delivered=counts[0], failed=counts[1])
            for (name, identity), counts in self._deliverer.outcomes.items()
        ]
        return sorted(rows, key=lambda r: (r.name, r.subscriber))

    def flows(self) -> EventFlows:
        """Who talks to whom: ``publishers`` (name -> sources), ``subscribers`` (pattern ->
        plugins, active only), ``responders`` (request name -> plugins that answered).

        >>> event_bus.flows().subscribers.get("product.created", [])
        """
        subscribers: dict[str, set[str]] = {}
        for subs in self._owned.values():
            for sub in subs:
                if sub.state is SubscriptionState.ACTIVE:
                    subscribers.setdefault(sub.pattern, set()).add(sub.identity)
        return EventFlows(
            publishers=self._graph.publishers(),
            subscribers={p: sorted(who) for p, who in sorted(subscribers.items())},
            responders=self._graph.responders(),
        )

    # -- the core the handles call --------------------------------------------------

    def _event(self, name: str, payload: Any, source: str) -> Event:
        parent = current_event_id()
        if not self._accepting and parent is None:
            raise BusClosed(
                f"the event bus is {'shutting down' if self._drained else 'not set up'}; "
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
        )
        self._history.append(event)
        if self._taps:
            self._notify(event)
        return event

    def _notify(self, event: Event) -> None:
        for tap in tuple(self._taps):
            try:
                tap(event)
            except Exception:  # noqa: BLE001 - isolation boundary: an observer must not break publish
                self._log.exception("event_tap_failed", event_name=event.name, event_id=event.id)

    async def _publish(self, name: str, payload: Any, source: str) -> str:
        event = self._event(name, payload, source)
        await self._send(event)
        return event.id

    async def _request(self, name: str, payload: Any, source: str, timeout: float) -> Any:
        event = self._event(name, payload, source)
        return await self._driver.request(event, timeout)

    def _subscription(
        self, owner: Owner, pattern: str, handler: Handler, retries: int
    ) -> Subscription:
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

    def _track(self, sub: Subscription) -> None:
        self._owned.setdefault(sub.owner, []).append(sub)
        if sub.owner.active:
            self._open(sub)

    def _open(self, sub: Subscription) -> None:
        if self._drained:
            self._fanout.close(sub)
            return
        self._fanout.open(sub)
        try:
            if not self._watchdog:
                self._kernel.start_background(self._deliverer.watch, name="event_bus:watchdog")
                self._watchdog = True
            self._kernel.start_background(
                self._deliverer.consume, sub, name=f"event_bus:{sub.identity}:{sub.pattern}"
            )
        except Exception:
            self._fanout.close(sub)
            if sub.receive is not None:
                sub.receive.close()
            raise
        self._driver.watch(sub.pattern, sub.identity)

    def _close(self, sub: Subscription) -> None:
        """Stop ``sub`` receiving new events (its consumer finishes the backlog)."""
        if sub.state is SubscriptionState.ACTIVE:
            self._driver.unwatch(sub.pattern, sub.identity)
        self._fanout.close(sub)

    async def _release(self, sub: Subscription) -> None:
        """Undo a subscription: no new events; the backlog gets ``EVENT_BUS_DRAIN_TIMEOUT``."""
        try:
            if sub.owner.released:  # unloading: all of the plugin's subscriptions stop at once
                for other in self._owned.get(sub.owner, ()):
                    self._close(other)
            self._close(sub)
            if sub.state is SubscriptionState.CLOSED or sub.task_id == anyio.get_current_task().id:
                return  # never started, or unsubscribing from inside its own handler
            with anyio.move_on_after(self._drain_timeout):
                await sub.done.wait()
            if not sub.done.is_set():
                self._log.warning(
                    "subscription_release_timeout",
                    subscriber=sub.identity,
                    pattern=sub.pattern,
                    seconds=self._drain_timeout,
                )
                sub.scope.cancel()
                with anyio.move_on_after(self._drain_timeout):
                    await sub.done.wait()
        finally:
            subs = self._owned.get(sub.owner)
            if subs is not None and sub in subs:
                subs.remove(sub)
                if not subs:
                    del self._owned[sub.owner]

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
            self._log.error("dead_letter_not_requeued", **fields)  # no _dlq._dlq. chains
            return
        try:
            payload = {
                "event": msgspec.to_builtins(event),
                "error": f"{type(error).__name__}: {error}",
                "attempts": attempts,
                "subscriber": sub.identity,
            }
            with causation(event.correlation_id, event.id):
                await self._publish(DLQ_PREFIX + event.name, payload, SOURCE)
        except Exception:  # noqa: BLE001 - isolation boundary: a dead letter must not kill the consumer
            self._log.exception("dead_letter_failed", **fields)
            return
        self._log.warning("event_dead_lettered", **fields)
