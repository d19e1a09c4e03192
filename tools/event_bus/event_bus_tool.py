"""The ``event_bus`` tool: publish/subscribe and request/reply between plugins.

Plugins receive an :class:`~tools.event_bus.EventBus` bound to their identity
(the ``source`` of what they publish); everything they subscribe is owned by
them and disappears when they unload. Underneath, a backend carries events:
the in-process memory backend by default (``EVENT_BUS_URL=memory://``), or NATS
with JetStream across replicas (``EVENT_BUS_URL=nats://host:4222``, ``nats/``).

Settings (all optional): ``EVENT_BUS_URL`` (``memory://``), ``EVENT_BUS_BUFFER``
(1024 events per subscription), ``EVENT_BUS_PUBLISH_TIMEOUT`` (30 s: how long
``publish`` waits for room in a full buffer before raising ``PublishTimeout``),
``EVENT_BUS_DELIVERY_TIMEOUT`` (30 s per handler call), ``EVENT_BUS_RETRY_BACKOFF``
(0.1 s, doubled per retry), ``EVENT_BUS_DRAIN_TIMEOUT`` (5 s to drain at shutdown,
and the grace an unloading plugin's queued events get), ``EVENT_BUS_HISTORY``
(1000 recent events). NATS only: ``EVENT_BUS_STREAM`` (``microcore``: stream name
and subject root), ``EVENT_BUS_ACK_WAIT`` (30 s before a dead replica's events go to
another), ``EVENT_BUS_RETENTION`` (7 days an event waits for a plugin with no replica up).

Module map: ``_router`` (the bus proper: events, causality, subscriptions by
owner, dead letters), ``_fanout`` (subscriptions and their bounded buffers),
``_delivery`` (consumer tasks, deadlines, retries), ``_backend`` (the backend
seam), ``memory`` (the in-process backend), ``nats/`` (the NATS backend),
``_history`` (recent events, flow graph), ``_handle`` (the plugin-facing
:class:`EventBus`), ``_stats`` (what :meth:`EventBusTool.subscriptions` and
:meth:`EventBusTool.outcomes` report), ``_settings``, ``_errors``. Event-name
grammar and pattern matching are :mod:`microcore.events`.

Transactional outbox: ``_outbox`` (``publish(..., transaction=tx)``: events stored with a
db transaction, relayed after commit); ``EVENT_BUS_OUTBOX_LEASE`` (10 s).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from microcore import Event, Tool
from microcore.tooling import ConfigurationError, EventFlows, KernelView, Owner
from tools.config import Config

from ._backend import EventBackend
from ._handle import EventBus
from ._outbox import OutboxStore, Relay, outbox_lease
from ._router import Router, Start
from ._settings import BusSettings, read_settings
from ._stats import DeliveryOutcome, SubscriptionState, SubscriptionStats
from .memory import MemoryBackend

__all__ = ("EventBus", "EventBusTool", "backend_for")

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")


def backend_for(
    settings: BusSettings, *, start_background: Start, accepting: Callable[[], bool]
) -> EventBackend:
    """The backend ``EVENT_BUS_URL``'s scheme names (the one place that picks it)."""
    url = settings.url
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryBackend()
    if scheme == "nats":
        try:
            from .nats import NatsBackend  # nats-py is optional: only NATS users install it
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("nats"):
                raise
            raise ConfigurationError(
                f"EVENT_BUS_URL={url!r} needs nats-py: pip install 'microcore[nats]'"
            ) from exc
        return NatsBackend(settings, start_background=start_background, accepting=accepting)
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

    def __init__(self, config: Config, kernel: KernelView, db: Tool | None = None) -> None:
        self._config = config
        self._router = Router(kernel.start_background)
        # the db tool's outbox table, for publish(..., transaction=tx) (see _outbox.py)
        store = getattr(db, "outbox", None)
        self._store = store if isinstance(store, OutboxStore) else None

    # -- lifecycle ---------------------------------------------------------------

    async def setup(self) -> None:
        settings = read_settings(self._config)
        router = self._router
        backend = backend_for(
            settings,
            start_background=router.start_background,
            accepting=lambda: router.accepting,
        )
        await router.open(settings, backend)
        await self._open_outbox()

    async def _open_outbox(self) -> None:
        """Create the outbox table; relaying starts once every plugin booted."""
        store = self._store
        if store is None:
            return
        lease = outbox_lease(self._config)
        try:
            await store.open()
        except Exception as exc:  # noqa: BLE001 - the db tool failed: the bus works without
            _log.warning("outbox_unavailable", error=f"{type(exc).__name__}: {exc}")
            return
        self._router.outbox = Relay(store, self._router, lease=lease)

    async def probe(self) -> str | None:
        """Readiness: the transport carries events now (NATS connected)."""
        return self._router.backend.problem()

    async def on_boot_complete(self) -> None:
        """Serve once the backend carries every subscription (NATS: queue groups joined);
        then relay the outbox (what a crash left too: every plugin subscribed by now)."""
        await self._router.backend.ready()
        relay = self._router.outbox
        if relay is not None and not relay.running:
            relay.running = True
            self._router.start_background(relay.run, name="event_bus:outbox")

    def bind(self, owner: Owner) -> EventBus:
        return EventBus(self._router, owner)

    def on_plugins_changed(self) -> None:
        self._router.plugins_changed()

    async def drain(self) -> None:
        """Stop taking new events; let queued ones (and the events they cause) finish in
        ``EVENT_BUS_DRAIN_TIMEOUT``; cancel and log what is left."""
        await self._close_outbox()
        await self._router.drain()

    async def _close_outbox(self) -> None:
        relay = self._router.outbox
        if relay is not None:
            await relay.close(self._router.drain_timeout)

    async def shutdown(self) -> None:
        await self._close_outbox()
        await self._router.drain()

    # -- observing (tools and tests) ------------------------------------------------

    def tap(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously for every event published; returns ``remove``.

        >>> remove = event_bus.tap(seen.append)
        """
        taps = self._router.taps
        taps.append(callback)

        def remove() -> None:
            if callback in taps:
                taps.remove(callback)

        return remove

    def history(
        self, *, correlation_id: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Recent events (``EVENT_BUS_HISTORY`` of them), oldest first, with ``parent_id``.

        >>> [e.name for e in event_bus.history(correlation_id=event.correlation_id)]
        """
        return self._router.history.events(correlation_id=correlation_id, limit=limit)

    def chain(self, event_id: str) -> list[Event]:
        """The causal chain that led to ``event_id``, root first (as far as history reaches).

        >>> [e.name for e in event_bus.chain(event.id)]
        """
        return self._router.history.chain(event_id)

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
            for subs in self._router.owned.values()
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
            for (name, identity), counts in self._router.deliverer.outcomes.items()
        ]
        return sorted(rows, key=lambda r: (r.name, r.subscriber))

    async def outbox_depth(self) -> int | None:
        """Events committed with ``publish(..., transaction=tx)`` and not relayed yet, by
        every replica (a count of the outbox table); None without an outbox.

        >>> await event_bus.outbox_depth()
        0
        """
        relay = self._router.outbox
        return None if relay is None else await relay.store.depth()

    def flows(self) -> EventFlows:
        """Who talks to whom: ``publishers`` (name -> sources), ``subscribers`` (pattern ->
        plugins, active only), ``responders`` (request name -> plugins that answered).

        >>> event_bus.flows().subscribers.get("product.created", [])
        """
        subscribers: dict[str, set[str]] = {}
        for subs in self._router.owned.values():
            for sub in subs:
                if sub.state is SubscriptionState.ACTIVE:
                    subscribers.setdefault(sub.pattern, set()).add(sub.identity)
        graph = self._router.graph
        return EventFlows(
            publishers=graph.publishers(),
            subscribers={p: sorted(who) for p, who in sorted(subscribers.items())},
            responders=graph.responders(),
        )
