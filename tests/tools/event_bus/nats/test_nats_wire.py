"""What crosses the wire: payloads and replies msgpack cannot carry, and queueing one item."""

from __future__ import annotations

import anyio
import pytest

from microcore import Event
from microcore.tooling import Owner
from tools.event_bus import EventPayloadError
from tools.event_bus._fanout import Fanout, Subscription
from tools.event_bus.nats.replies import offer, queue_to
from tools.event_bus.nats.wire import FAILED, decode_reply, encode_reply, encode_request


def _event(payload: object) -> Event:
    return Event(name="a.b", payload=payload, id="1", correlation_id="1", source="t", timestamp=0.0)


async def _handler(event: Event) -> None:
    return None


def _subscription(fanout: Fanout) -> Subscription:
    sub = Subscription(Owner("shop.A"), "a.b", _handler, 0)
    fanout.open(sub)
    return sub


def test_nats_wire_request_payload_msgpack_cannot_carry_is_refused() -> None:
    """A request whose payload msgpack cannot encode fails with EventPayloadError naming it."""
    with pytest.raises(EventPayloadError, match=r"request 'a\.b' cannot be sent over NATS"):
        encode_request(_event({"x": object()}), 1.0)


def test_nats_wire_reply_msgpack_cannot_carry_becomes_a_failure_frame() -> None:
    """A return value msgpack cannot encode travels as a FAILED frame saying why."""
    frame = decode_reply(encode_reply(1, "shop.A", object()))
    assert frame.kind == FAILED
    assert frame.error is not None and "cannot be sent over NATS" in frame.error


async def test_nats_offer_and_queue_to_report_full_and_gone_subscriptions() -> None:
    """offer: True queued, None full, False gone; queue_to: False for a gone subscription."""
    fanout = Fanout(buffer=1, publish_timeout=0.01)
    sub = _subscription(fanout)
    assert offer(fanout, sub, _event({})) is True
    assert offer(fanout, sub, _event({})) is None
    never = Subscription(Owner("shop.B"), "a.b", _handler, 0)
    assert offer(fanout, never, _event({})) is False
    assert await queue_to(fanout, never, _event({})) is False
    fanout.close(sub)
    assert offer(fanout, sub, _event({})) is False
    assert await queue_to(fanout, sub, _event({})) is False
    assert fanout.outstanding == 1
    assert sub.receive is not None
    sub.receive.close()


async def test_nats_queue_to_a_full_buffer_waits_for_room() -> None:
    """queue_to waits for room like publish does, and queues once there is some."""
    fanout = Fanout(buffer=1, publish_timeout=5.0)
    sub = _subscription(fanout)
    assert await queue_to(fanout, sub, _event({})) is True
    results: list[bool] = []
    async with anyio.create_task_group() as tg:

        async def second() -> None:
            results.append(await queue_to(fanout, sub, _event({})))

        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert sub.receive is not None
        sub.receive.receive_nowait()
        sub.made_room()
    assert results == [True]
    assert fanout.outstanding == 2
    assert sub.receive is not None and sub.send is not None
    sub.receive.close()
    sub.send.close()
