"""A subscription's buffer: order, room, closing, and no item lost to a cancelled consumer."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from tools.event_bus._buffer import BufferReceive, BufferSend, create_buffer


def _ints(size: int) -> tuple[BufferSend[int], BufferReceive[int]]:
    return create_buffer(size)


async def test_items_come_out_in_order_and_a_full_buffer_refuses_more() -> None:
    send, receive = _ints(2)
    send.send_nowait(1)
    send.send_nowait(2)
    assert not send.has_room()
    with pytest.raises(anyio.WouldBlock):
        send.send_nowait(3)
    assert receive.queued == 2
    assert [receive.receive_nowait(), await receive.receive()] == [1, 2]
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()


async def test_a_waiting_consumer_gets_the_item_without_it_taking_a_slot() -> None:
    send, receive = _ints(1)
    got: list[int] = []
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            got.append(await receive.receive())

        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        send.send_nowait(1)  # handed over: the one slot stays free
        send.send_nowait(2)
    assert got == [1]
    assert receive.receive_nowait() == 2


async def test_closing_the_sending_end_ends_the_stream_after_what_is_queued() -> None:
    send, receive = _ints(4)
    send.send_nowait(1)
    send.close()
    with pytest.raises(anyio.ClosedResourceError):
        send.send_nowait(2)
    assert await receive.receive() == 1
    with pytest.raises(anyio.EndOfStream):
        await receive.receive()


async def test_closing_the_sending_end_wakes_a_waiting_consumer() -> None:
    send, receive = _ints(4)
    ended = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            with pytest.raises(anyio.EndOfStream):
                await receive.receive()
            ended.set()

        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        send.close()
    assert ended.is_set()


async def test_a_closed_receiving_end_refuses_items() -> None:
    send, receive = _ints(4)
    receive.close()
    with pytest.raises(anyio.BrokenResourceError):
        send.send_nowait(1)
    with pytest.raises(anyio.ClosedResourceError):
        receive.receive_nowait()


async def test_an_item_handed_to_a_consumer_cancelled_before_it_ran_stays_first() -> None:
    send, receive = _ints(4)
    task = asyncio.create_task(receive.receive())
    await anyio.wait_all_tasks_blocked()
    send.send_nowait(1)  # handed over...
    send.send_nowait(2)
    task.cancel()  # ...but the consumer is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [receive.receive_nowait(), receive.receive_nowait()] == [1, 2]
