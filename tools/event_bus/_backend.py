"""The backend seam: how a published event reaches the processes that subscribe to it.

The bus (``_router.py``) owns everything plugins see: names, patterns,
subscriptions and their buffers, retries, dead letters, causality, history.
A backend only carries events. It receives them from the bus through the
function :meth:`EventBackend.publisher` returns and hands the ones that arrive
back to the bus's :class:`Sink`, which fans them out to local subscriptions.

* The memory backend (``memory://``, the default, ``memory.py``) hands every
  event straight to the local sink: one process, no copies, no encoding.
* A network backend (NATS, ``nats/``) encodes the event, sends it, and calls
  ``sink.dispatch`` for what it receives, keeping one queue group per
  subscriber (:meth:`EventBackend.watch`) so an event is handled once per
  plugin across replicas (a broadcast subscription: one per replica). Its
  :meth:`EventBackend.request` uses the
  transport's own request/reply and answers remote requests through a
  :class:`Reply`.

:func:`tools.event_bus.event_bus_tool.backend_for` picks the backend from
``EVENT_BUS_URL``'s scheme.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from microcore import Event

__all__ = ("EventBackend", "Publisher", "Reply", "Sink")

Publisher = Callable[[Event], Awaitable[object]]


class Reply(Protocol):
    """Where the responders of one request send their outcome; the first answer wins."""

    def expect(self, responders: int) -> None:
        """Say how many responders got the request (known once it was queued for all)."""
        ...

    def answer(self, value: Any, responder: str, *, final: bool = False) -> bool:
        """Offer a handler's return value; True if it was the winning reply.

        ``None`` answers only when ``final`` (a responder registered with ``respond``);
        a subscriber's ``None`` just says it finished.
        """
        ...

    def fail(self, error: BaseException, responder: str) -> None:
        """Record that one responder gave up (after its retries) or was unloaded."""
        ...

    @property
    def open(self) -> bool:
        """False once answered, or once the requester stopped waiting."""
        ...


class Sink(Protocol):
    """The bus side of the seam: local fan-out."""

    async def dispatch(self, event: Event, reply: Reply | None = None) -> int:
        """Queue ``event`` for every local subscription matching its name; returns how many."""
        ...


class EventBackend(Protocol):
    """A transport for events, chosen by ``EVENT_BUS_URL``'s scheme."""

    async def open(self, sink: Sink) -> None:
        """Connect; events that arrive from the transport go to ``sink``."""
        ...

    def publisher(self) -> Publisher:
        """The function the bus awaits for every published event (bound once, the hot path)."""
        ...

    async def request(self, event: Event, timeout: float) -> Any:
        """Deliver ``event`` to its responders; return the first reply.

        Raises ``NoResponder`` at once when nothing subscribes to the name,
        ``RequestTimeout`` after ``timeout`` seconds, ``RequestFailed`` when
        every responder failed.
        """
        ...

    def watch(self, pattern: str, group: str, mode: str = "subscribe") -> None:
        """A local subscription of ``group`` (a plugin identity) to ``pattern`` became active.

        ``mode`` (``_fanout.SUBSCRIBE``, ``BROADCAST`` or ``RESPOND``) says what it takes:
        events once per group and requests; events on every replica; requests only.
        """
        ...

    def unwatch(self, pattern: str, group: str, mode: str = "subscribe") -> None:
        """That subscription went away."""
        ...

    async def ready(self) -> None:
        """Return once the transport carries every active subscription's events.

        A network backend joins its groups in the background; the bus awaits this
        before the app serves, so a replica that answers has joined its groups.
        """
        ...

    def problem(self) -> str | None:
        """Readiness: None while the transport is connected, else why not (cheap, no I/O)."""
        ...

    async def close(self) -> None:
        """Disconnect. Called after the bus drained."""
        ...
