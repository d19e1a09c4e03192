"""The in-process backend (``memory://``, the default): events go straight to the local fan-out."""

from __future__ import annotations

import asyncio
from typing import Any

from microcore import Event
from microcore.tooling import NoResponder, RequestTimeout

from ._backend import Publisher, Sink
from ._errors import RequestFailed

__all__ = ("MemoryBackend", "Waiter")


class Waiter:
    """One pending request: the first reply wins.

    A responder's return value (``respond``), ``None`` included, is a reply; a
    subscriber's is one only when it is not ``None`` (an observer subscribed to
    ``order.>`` must not win the race against the real responder). When every
    handler finished without answering, the request returns ``None``, or
    raises :class:`RequestFailed` if any of them failed. The requester awaits
    one asyncio future (the bus runs on asyncio), made only if it must wait.
    """

    __slots__ = ("_done", "_expected", "_finished", "_open", "error", "responder", "value")

    def __init__(self) -> None:
        self._done: asyncio.Future[None] | None = None
        self._open = True
        self._expected = -1
        self._finished = 0
        self.error: BaseException | None = None
        self.value: Any = None
        self.responder: str | None = None

    @property
    def open(self) -> bool:
        return self._open

    def expect(self, responders: int) -> None:
        self._expected = responders
        self._settle()

    def answer(self, value: Any, responder: str, *, final: bool = False) -> bool:
        self._finished += 1
        if not self._open:
            return False
        if value is None and not final:
            self._settle()
            return False
        self.value, self.responder = value, responder
        self._close()
        return True

    def fail(self, error: BaseException, responder: str) -> None:
        self._finished += 1
        if self._open:
            self.error = error
            self._settle()

    def _settle(self) -> None:
        if self._open and 0 <= self._expected <= self._finished:
            self._close()

    def _close(self) -> None:
        self._open = False
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def cancel(self) -> None:
        """The requester stopped waiting: later answers are ignored."""
        self._open = False

    async def wait(self) -> None:
        if self._open:
            self._done = asyncio.get_running_loop().create_future()
            await self._done


class MemoryBackend:
    """One process: publish is a direct call into the bus's fan-out."""

    def __init__(self) -> None:
        self._sink: Sink | None = None
        self.waiting: set[Waiter] = set()

    async def open(self, sink: Sink) -> None:
        self._sink = sink

    def publisher(self) -> Publisher:
        if self._sink is None:
            raise RuntimeError("the memory backend is not open")
        return self._sink.dispatch

    async def request(self, event: Event, timeout: float) -> Any:
        if self._sink is None:
            raise RuntimeError("the memory backend is not open")
        waiter = Waiter()
        self.waiting.add(waiter)
        timed_out = False
        # asyncio's timeout (one timer) rather than an anyio cancel scope: the bus runs on
        # asyncio, and this is most of a request's bookkeeping in process
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                count = await self._sink.dispatch(event, waiter)
                if not count:
                    raise NoResponder(
                        f"nothing responds to {event.name!r}, so no one can answer the "
                        f"request; register a responder in the plugin that owns the data, "
                        f"e.g. await event_bus.respond({event.name!r}, self.answer)"
                    )
                waiter.expect(count)
                await waiter.wait()
        except TimeoutError:
            if not deadline.expired():
                raise  # not this request's timeout (e.g. PublishTimeout from a full buffer)
            timed_out = True
        finally:
            waiter.cancel()
            self.waiting.discard(waiter)
        if waiter.responder is not None:
            return waiter.value
        if timed_out:
            raise RequestTimeout(
                f"no reply to request {event.name!r} (event {event.id}) within {timeout} s; "
                "the responder is slow or hung: raise the timeout or look at its logs"
            )
        if waiter.error is not None:
            raise RequestFailed(
                f"every responder to {event.name!r} (event {event.id}) failed; last error: "
                f"{type(waiter.error).__name__}: {waiter.error}"
            ) from waiter.error
        return None

    def watch(self, pattern: str, group: str, mode: str = "subscribe") -> None:
        """Nothing to join: the fan-out is the transport."""

    def unwatch(self, pattern: str, group: str, mode: str = "subscribe") -> None:
        """Nothing to leave."""

    def problem(self) -> str | None:
        """In process: always ready."""
        return None

    async def ready(self) -> None:
        """Always ready: subscriptions receive as soon as they are open."""

    async def close(self) -> None:
        """Nothing to disconnect."""
