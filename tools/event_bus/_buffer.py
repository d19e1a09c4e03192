"""One subscription's bounded buffer: publishers queue items, its one consumer task takes them.

Made for the bus instead of an anyio memory object stream, whose blocking
``receive`` costs more than the rest of a delivery's bookkeeping: a checkpoint
(one more trip round the event loop) before it looks, and per wait an event, a
record of the waiting task and a look-up of the async backend. Here a consumer
that finds the buffer empty awaits one asyncio future, and the next
``send_nowait`` hands the item to it directly (as the memory stream does: an
item handed over takes no slot). The bus runs on asyncio (the kernel's loop,
and nats-py's).

The two ends keep the memory stream's names and errors, which the bus relies
on: ``send_nowait`` raises ``WouldBlock`` when full, ``ClosedResourceError``
once the sending end is closed and ``BrokenResourceError`` once the receiving
end is; ``receive``/``receive_nowait`` raise ``EndOfStream`` once the sending
end is closed and the buffer is empty, ``ClosedResourceError`` once the
receiving end is closed. Publishers never block in ``send``: they wait for room
with the fan-out's own backpressure (``Fanout.wait_for_room``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ("BufferReceive", "BufferSend", "create_buffer")

T = TypeVar("T")


class _State(Generic[T]):
    __slots__ = ("items", "receiving", "sending", "size", "waiter")

    def __init__(self, size: int) -> None:
        self.items: deque[T] = deque()
        self.size = size
        self.waiter: asyncio.Future[T | None] | None = None  # the consumer waiting, if it is
        self.sending = True  # the sending end is open
        self.receiving = True  # the receiving end is open

    def wake(self) -> None:
        """Wake a waiting consumer without an item (an end was closed: it looks again)."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class BufferSend(Generic[T]):
    """The publishers' end."""

    __slots__ = ("_state",)

    def __init__(self, state: _State[T]) -> None:
        self._state = state

    def send_nowait(self, item: T) -> None:
        state = self._state
        if not state.sending:
            raise anyio.ClosedResourceError
        if not state.receiving:
            raise anyio.BrokenResourceError
        waiter = state.waiter
        if waiter is not None:
            state.waiter = None
            if not waiter.done():
                waiter.set_result(item)  # straight into the consumer's hands
                return
        if len(state.items) >= state.size:
            raise anyio.WouldBlock
        state.items.append(item)

    def has_room(self) -> bool:
        """Whether :meth:`send_nowait` queues an item now (False when full)."""
        state = self._state
        return state.waiter is not None or len(state.items) < state.size

    def close(self) -> None:
        """No more items: the consumer takes what is queued, then gets ``EndOfStream``."""
        state = self._state
        state.sending = False
        state.wake()


class BufferReceive(Generic[T]):
    """The consumer's end (one task receives)."""

    __slots__ = ("_state",)

    def __init__(self, state: _State[T]) -> None:
        self._state = state

    @property
    def queued(self) -> int:
        """Items in the buffer (not counting one handed to the consumer)."""
        return len(self._state.items)

    def receive_nowait(self) -> T:
        state = self._state
        if not state.receiving:
            raise anyio.ClosedResourceError
        if state.items:
            return state.items.popleft()
        if not state.sending:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> T:
        """The next item, waiting for one if need be."""
        state = self._state
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
            waiter: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
            state.waiter = waiter
            try:
                item = await waiter
            except BaseException:
                if state.waiter is waiter:
                    state.waiter = None
                elif waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    # handed over, then this task was cancelled before it could take it:
                    # it stays first in line
                    state.items.appendleft(waiter.result())  # type: ignore[arg-type]
                raise
            if item is not None:
                return item

    def close(self) -> None:
        """Take nothing more: publishers get ``BrokenResourceError``; what is queued stays."""
        state = self._state
        state.receiving = False
        state.wake()


def create_buffer(size: int) -> tuple[BufferSend[T], BufferReceive[T]]:
    """A buffer of ``size`` items (at least 1): its sending and receiving ends."""
    state: _State[T] = _State(size)
    return BufferSend(state), BufferReceive(state)
