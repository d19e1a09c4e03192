"""What a plugin receives as ``event_bus``: the bus, bound to that plugin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from microcore.tooling import Owner, RegistrationError

from ._fanout import BROADCAST, RESPOND, SUBSCRIBE, EventHandler, Subscription
from ._history import Graph
from ._outbox import OutboxUnavailable
from ._router import Router

if TYPE_CHECKING:
    from tools.db import Transaction

__all__ = ("EventBus", "EventHandler")

R = TypeVar("R")


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

            async def on_created(self, event: Event[ProductCreated]) -> None:
                ...  # event.payload is a ProductCreated; event.id, .correlation_id, .source
    """

    __slots__ = ("_owner", "_published", "_responders", "_router", "_source", "_subs")

    def __init__(self, router: Router, owner: Owner) -> None:
        self._router = router
        self._owner = owner
        self._source = owner.identity
        self._published = router.published_by(owner.identity)
        self._subs: dict[tuple[str, EventHandler], Subscription] = {}
        self._responders: dict[str, Subscription] = {}

    async def publish(
        self, name: str, payload: Any, *, transaction: Transaction | None = None
    ) -> str:
        """Publish an event, return its id; with ``transaction=tx``, once ``tx`` commits
        (outbox).

        ``payload`` is a msgspec Struct (its type is the event's contract: the
        manifest shows its fields) or a dict. Returns once the event is
        queued for every subscriber, without yielding to other tasks unless it
        must wait: when a subscriber's buffer (``EVENT_BUS_BUFFER``) is full,
        publish waits for room (backpressure, nothing is dropped) up to
        ``EVENT_BUS_PUBLISH_TIMEOUT``, then raises ``PublishTimeout``. What a
        handler publishes carries its event's correlation id and has that
        event as parent. In development, a payload that breaks its Struct's
        constraints or a local handler's ``Event[T]`` raises ``EventPayloadError``.

        >>> await self.bus.publish("product.created", ProductCreated(id=7, name="Pen"))

        With ``transaction=tx`` (an open ``db.transaction()``) the event is stored in
        ``tx`` and relayed once it commits (retried until the bus takes it, also after
        a crash), never if it rolls back: a write's answer depends only on its commit.
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

    async def subscribe(
        self, pattern: str, handler: EventHandler, *, retries: int = 0, broadcast: bool = False
    ) -> None:
        """Call ``async handler(event)`` for every event whose name matches ``pattern``.

        Events arrive in publish order, one at a time; ``event: Event[T]`` converts
        the payload to ``T`` first. A handler that raises is logged and retried
        ``retries`` times (backoff 0.1 s, 0.2 s, ...); then the event goes to
        ``_dlq.<name>`` (a payload that is no ``T`` goes there at once). Across
        replicas each event is handled once per plugin; with ``broadcast=True``
        every replica's handler gets it (at most once, live only: for SSE feeds and
        caches), and requests do not reach it. A non-``None`` return value answers a
        ``request``. Ends when the plugin unloads, or with :meth:`unsubscribe`.

        >>> await self.bus.subscribe("order.*", self.on_order, retries=3)
        """
        key = (pattern, handler)
        if key in self._subs:
            raise RegistrationError(
                f"plugin {self._source!r} already subscribed {_name(handler)} to {pattern!r}; "
                "subscribe once (or unsubscribe first)"
            )
        mode = BROADCAST if broadcast else SUBSCRIBE
        sub = self._router.subscription(self._owner, pattern, handler, retries, mode)

        async def release() -> None:
            if self._subs.get(key) is sub:
                del self._subs[key]
            await self._router.release(sub)

        self._track(sub, "subscription", release)
        self._subs[key] = sub

    async def respond(self, name: str, handler: EventHandler, *, retries: int = 0) -> None:
        """Answer ``request(name, ...)`` with what ``async handler(event)`` returns.

        Whatever it returns, ``None`` included, is the reply (``-> Product | None``
        declares its shape). One responder per name per plugin; published events
        do not reach it. If it raises after ``retries`` retries the requester gets
        ``RequestFailed``. It ends when the plugin unloads.

        >>> await self.bus.respond("product.get", self.on_get)
        """
        if name in self._responders:
            raise RegistrationError(
                f"plugin {self._source!r} already responds to {name!r} with "
                f"{_name(self._responders[name].handler)}; one responder per name per plugin"
            )
        sub = self._router.subscription(self._owner, name, handler, retries, RESPOND)

        async def release() -> None:
            if self._responders.get(name) is sub:
                del self._responders[name]
            await self._router.release(sub)

        self._track(sub, "responder", release)
        self._responders[name] = sub

    def _track(self, sub: Subscription, kind: str, release: Callable[[], Awaitable[None]]) -> None:
        sub.registration = self._owner.own(kind, sub.pattern, release)
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

    @overload
    async def request(
        self, name: str, payload: Any, timeout: float = 5.0, *, reply: type[R]
    ) -> R | None: ...

    @overload
    async def request(
        self, name: str, payload: Any, timeout: float = 5.0, *, reply: None = None
    ) -> Any: ...

    async def request(
        self, name: str, payload: Any, timeout: float = 5.0, *, reply: Any = None
    ) -> Any:
        """The first reply from ``name``'s responders.

        The reply is what a responder's handler returns (``None`` included), or
        the first non-``None`` return of a subscriber; ``reply=Product`` converts
        it to that type (``None`` stays ``None``), in process and over NATS.
        Raises ``NoResponder`` (503) at once when nothing responds, and
        ``RequestTimeout`` (504) when no reply comes within ``timeout`` seconds;
        ``RequestFailed`` when the responders failed.

        >>> product = await self.bus.request("product.get", ProductId(7), reply=Product)
        """
        Graph.note(self._published, name)
        return await self._router.request(name, payload, self._source, timeout, reply)

    def __repr__(self) -> str:
        return f"<EventBus of {self._source}>"


def _name(handler: Any) -> str:
    return str(getattr(handler, "__qualname__", None) or repr(handler))
