"""What a plugin receives as ``event_bus``: the bus, bound to that plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microcore.tooling import Owner, RegistrationError

from ._fanout import Handler, Subscription
from ._history import Graph

if TYPE_CHECKING:
    from .event_bus_tool import EventBusTool

__all__ = ("EventBus",)


class EventBus:
    """Publish, subscribe and request on the event bus, as one plugin.

    Names are dot-separated tokens (``product.created``); in patterns ``*``
    matches one token and ``>`` one or more trailing tokens (``order.>``)::

        class NotifyPlugin(Plugin):
            def __init__(self, event_bus):
                self.bus = event_bus

            async def on_boot(self):
                await self.bus.subscribe("product.created", self.on_created, retries=2)

            async def on_created(self, event):
                ...  # event.name, event.payload, event.id, event.correlation_id, event.source
    """

    __slots__ = ("_bus", "_owner", "_published", "_source", "_subs")

    def __init__(self, bus: EventBusTool, owner: Owner) -> None:
        self._bus = bus
        self._owner = owner
        self._source = owner.identity
        self._published = bus._graph.published_by(owner.identity)
        self._subs: dict[tuple[str, Handler], Subscription] = {}

    async def publish(self, name: str, payload: Any) -> str:
        """Publish an event (fire-and-forget) and return its id.

        ``payload`` is a dict or a msgspec Struct. Returns once the event is
        queued for every subscriber, without yielding to other tasks unless it
        must wait: when a subscriber's buffer (``EVENT_BUS_BUFFER``) is full,
        publish waits for room (backpressure, nothing is dropped) up to
        ``EVENT_BUS_PUBLISH_TIMEOUT``, then raises ``PublishTimeout``. What a
        handler publishes carries its event's correlation id and has that
        event as parent.

        >>> await self.bus.publish("product.created", {"id": 7, "name": "Pen"})
        """
        Graph.note(self._published, name)
        return await self._bus._publish(name, payload, self._source)

    async def subscribe(self, pattern: str, handler: Handler, *, retries: int = 0) -> None:
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
        sub = self._bus._subscription(self._owner, pattern, handler, retries)

        async def release() -> None:
            if self._subs.get(key) is sub:
                del self._subs[key]
            await self._bus._release(sub)

        sub.registration = self._owner.own("subscription", pattern, release)
        self._subs[key] = sub
        self._bus._track(sub)

    async def unsubscribe(self, pattern: str, handler: Handler) -> None:
        """End a subscription made with the same ``pattern`` and ``handler``.

        No new events arrive; the ones already queued are still handled (this
        waits for them, up to ``EVENT_BUS_DRAIN_TIMEOUT``, unless called from
        that subscription's own handler).
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
        return await self._bus._request(name, payload, self._source, timeout)

    def __repr__(self) -> str:
        return f"<EventBus of {self._source}>"


def _name(handler: Any) -> str:
    return str(getattr(handler, "__qualname__", None) or repr(handler))
