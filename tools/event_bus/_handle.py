"""What a plugin receives as ``event_bus``: the bus, bound to that plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microcore.tooling import Owner, RegistrationError

from ._fanout import EventHandler, Subscription
from ._history import Graph
from ._outbox import OutboxUnavailable
from ._router import Router

if TYPE_CHECKING:
    from tools.db import Transaction

__all__ = ("EventBus", "EventHandler")


class EventBus:
    """Publish, subscribe and request on the event bus, as one plugin.

    Names are dot-separated tokens (``product.created``); in patterns ``*``
    matches one token and ``>`` one or more trailing tokens (``order.>``)::

        from microcore import Event, Plugin
        from tools.event_bus import EventBus

        class NotifyPlugin(Plugin):
            def __init__(self, event_bus: EventBus) -> None:
                self.bus = event_bus

            async def on_boot(self) -> None:
                await self.bus.subscribe("product.created", self.on_created, retries=2)

            async def on_created(self, event: Event) -> None:
                ...  # event.name, event.payload, event.id, event.correlation_id, event.source
    """

    __slots__ = ("_owner", "_published", "_router", "_source", "_subs")

    def __init__(self, router: Router, owner: Owner) -> None:
        self._router = router
        self._owner = owner
        self._source = owner.identity
        self._published = router.published_by(owner.identity)
        self._subs: dict[tuple[str, EventHandler], Subscription] = {}

    async def publish(
        self, name: str, payload: Any, *, transaction: Transaction | None = None
    ) -> str:
        """Publish an event (fire-and-forget) and return its id; with ``transaction=tx``,
        once ``tx`` commits (transactional outbox).

        ``payload`` is a dict or a msgspec Struct. Returns once the event is
        queued for every subscriber, without yielding to other tasks unless it
        must wait: when a subscriber's buffer (``EVENT_BUS_BUFFER``) is full,
        publish waits for room (backpressure, nothing is dropped) up to
        ``EVENT_BUS_PUBLISH_TIMEOUT``, then raises ``PublishTimeout``. What a
        handler publishes carries its event's correlation id and has that
        event as parent.

        >>> await self.bus.publish("product.created", {"id": 7, "name": "Pen"})

        With ``transaction=tx`` (an open ``db.transaction()``) the event commits with
        ``tx`` (transactional outbox): stored in the database in ``tx``, relayed to the
        bus once ``tx`` commits (retried until the bus takes it, also after a crash),
        never if it rolls back. It never waits for the bus, so a write's answer depends
        only on its commit:

        >>> async with self.db.transaction() as tx:
        ...     product_id = await tx.execute("INSERT INTO products ...", (name, price))
        ...     await self.bus.publish("product.created", {"id": product_id}, transaction=tx)
        """
        Graph.note(self._published, name)
        if transaction is None:
            return await self._router.publish(name, payload, self._source)
        outbox = self._router.outbox
        if outbox is None:
            raise OutboxUnavailable(
                f"{name!r} from {self._source!r} cannot be published with transaction=: the "
                "event bus has no outbox (it needs the db tool, set up); publish after the "
                "transaction instead, or fix the db tool"
            )
        return await outbox.put(transaction, name, payload, self._source)

    async def subscribe(self, pattern: str, handler: EventHandler, *, retries: int = 0) -> None:
        """Call ``async handler(event)`` for every event whose name matches ``pattern``.

        Events arrive in publish order, one at a time. A handler that raises is
        logged and retried ``retries`` times (backoff 0.1 s, 0.2 s, ...); then
        the event goes to ``_dlq.<name>``. A handler's non-``None`` return
        value answers a ``request``. The subscription ends when the plugin
        unloads, or with :meth:`unsubscribe`.

        >>> await self.bus.subscribe("order.*", self.on_order, retries=3)
        """
        key = (pattern, handler)
        if key in self._subs:
            raise RegistrationError(
                f"plugin {self._source!r} already subscribed {_name(handler)} to {pattern!r}; "
                "subscribe once (or unsubscribe first)"
            )
        sub = self._router.subscription(self._owner, pattern, handler, retries)

        async def release() -> None:
            if self._subs.get(key) is sub:
                del self._subs[key]
            await self._router.release(sub)

        sub.registration = self._owner.own("subscription", pattern, release)
        self._subs[key] = sub
        self._router.track(sub)

    async def unsubscribe(self, pattern: str, handler: EventHandler) -> None:
        """End a subscription made with the same ``pattern`` and ``handler``.

        No new events arrive; the ones already queued are still handled (this
        waits for them, up to ``EVENT_BUS_DRAIN_TIMEOUT``, unless called from
        that subscription's own handler). Raises ``RegistrationError`` naming
        the plugin's subscriptions when there is no such subscription.

        >>> await self.bus.unsubscribe("order.*", self.on_order)
        """
        sub = self._subs.get((pattern, handler))
        if sub is None or sub.registration is None:
            mine = ", ".join(sorted(f"{p!r} -> {_name(h)}" for p, h in self._subs)) or "none"
            raise RegistrationError(
                f"plugin {self._source!r} has no subscription of {_name(handler)} to "
                f"{pattern!r}; its subscriptions: {mine}"
            )
        await sub.registration.release()

    async def request(self, name: str, payload: Any, timeout: float = 5.0) -> Any:
        """Send a request to the subscribers of ``name`` and return the first reply.

        The reply is the first non-``None`` value a handler returns; if every
        responder finishes without one, the result is ``None`` (or
        ``RequestFailed`` when they failed). Raises ``NoResponder`` at once when
        nothing subscribes to ``name``, and ``RequestTimeout`` (a
        ``TimeoutError``; 504 in an HTTP handler) when no reply comes within
        ``timeout`` seconds, which also bounds queueing behind full buffers.

        >>> price = await self.bus.request("pricing.quote", {"sku": "PEN-1"}, timeout=2.0)
        """
        Graph.note(self._published, name)
        return await self._router.request(name, payload, self._source, timeout)

    def __repr__(self) -> str:
        return f"<EventBus of {self._source}>"


def _name(handler: Any) -> str:
    return str(getattr(handler, "__qualname__", None) or repr(handler))
