"""NATS restarts under load: what a publisher was told is what happens.

A nats-server of the test's own (``PrivateNats``: a free port, a store
directory) is stopped mid-stream, alternately with SIGTERM (a clean shutdown)
and SIGKILL (a crash), and started again on the same port and storage, while
three publishers keep publishing. Every publish's JetStream acknowledgement is
recorded per event id, so a lost event names the stream sequence it was given.

Skips when nats-server is not installed; fails instead under ``CI=true``.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import nats
import nats.js.client
import pytest
import structlog

from microcore import Event
from tests.support import eventually
from tests.tools.event_bus.conftest import (
    PrivateNats,
    nats_backend_of,
    plugin,
    private_nats,
    running_bus,
    wait_until,
)
from tools.event_bus import PublishTimeout

__all__ = ("private_nats",)  # the fixture, used here by name

RESTARTS = 12
PER_ROUND = 25  # events acknowledged between two restarts
GROUPS = ("shop.Stats", "shop.Mailer")

_log = structlog.get_logger("tests.faults")


@pytest.fixture
def stream_acks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, tuple[int, bool]]]:
    """Each publish's JetStream acknowledgement by event id: (stream sequence, duplicate)."""
    acks: dict[str, tuple[int, bool]] = {}
    publish = nats.js.client.JetStreamContext.publish

    async def recording(self: Any, subject: str, payload: bytes = b"", **options: Any) -> Any:
        ack = await publish(self, subject, payload, **options)
        acks[options["headers"]["Nats-Msg-Id"]] = (ack.seq, bool(ack.duplicate))
        return ack

    monkeypatch.setattr(nats.js.client.JetStreamContext, "publish", recording)
    yield acks


async def settled(url: str, stream: str) -> bool:
    """Every consumer of ``stream`` has everything delivered and acked (no redelivery to come)."""
    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        consumers = await client.jsm().consumers_info(stream)
    finally:
        await client.close()
    return bool(consumers) and all(c.num_pending == c.num_ack_pending == 0 for c in consumers)


def more_acknowledged(acknowledged: list[str]) -> Callable[[], bool]:
    """True once ``PER_ROUND`` more events than now were acknowledged."""
    mark = len(acknowledged) + PER_ROUND
    return lambda: len(acknowledged) >= mark


@pytest.mark.timeout(150)
async def test_nats_restarts_lose_no_acknowledged_event(
    private_nats: PrivateNats, stream_acks: dict[str, tuple[int, bool]]
) -> None:
    """Twelve nats-server restarts (SIGTERM and SIGKILL alternately) under publish load: every
    event whose publish returned is handled by every plugin, none twice by a handler that
    completed, and no event whose publish raised is ever handled."""
    await private_nats.serving()
    settings = {
        "EVENT_BUS_URL": private_nats.url,
        "EVENT_BUS_STREAM": "faults",
        "EVENT_BUS_ACK_WAIT": 2,  # what a SIGKILL left unacked comes back soon
        "EVENT_BUS_PUBLISH_TIMEOUT": 20,
    }
    completed: dict[str, Counter[str]] = {group: Counter() for group in GROUPS}
    numbers: dict[str, set[int]] = {group: set() for group in GROUPS}
    acknowledged: list[str] = []
    refused: list[int] = []
    async with running_bus(**settings) as bus:
        for group in GROUPS:

            async def handle(event: Event, group: str = group) -> None:
                completed[group][event.id] += 1
                numbers[group].add(event.payload["n"])

            await plugin(bus, group).subscribe("product.*", handle)
        await bus.on_boot_complete()
        publisher = plugin(bus, "shop.Products")
        counter = iter(range(1_000_000))
        stop = anyio.Event()

        async def publish() -> None:
            while not stop.is_set():
                n = next(counter)
                try:
                    acknowledged.append(await publisher.publish("product.created", {"n": n}))
                except PublishTimeout:
                    refused.append(n)
                await anyio.sleep(0.005)  # pacing: about 100 events/s per publisher

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(publish)
            for round_ in range(RESTARTS):
                await wait_until(more_acknowledged(acknowledged), timeout=30)
                sig = signal.SIGKILL if round_ % 2 else signal.SIGTERM
                await anyio.to_thread.run_sync(private_nats.stop, sig)
                private_nats.start()
            await wait_until(more_acknowledged(acknowledged), timeout=30)
            stop.set()

        def all_handled() -> bool:
            return all(completed[group].keys() >= set(acknowledged) for group in GROUPS)

        await wait_until(all_handled, timeout=30)
        await eventually(lambda: settled(private_nats.url, "faults"), timeout=30, interval=0.05)
        duplicates = nats_backend_of(bus).acks.duplicates

    for group in GROUPS:
        lost = [i for i in acknowledged if i not in completed[group]]
        assert not lost, f"{group} lost {len(lost)}: acks {[stream_acks.get(i) for i in lost]}"
        twice = [i for i, count in completed[group].items() if count > 1]
        assert not twice, f"{group} completed {len(twice)} events twice"
        assert not numbers[group] & set(refused), f"{group} got events whose publish raised"
    _log.info(  # the figures issue #14 asks for (pytest -s shows them)
        "nats_restart_figures",
        restarts=RESTARTS,
        acknowledged=len(acknowledged),
        delivered=sum(len(completed[g]) for g in GROUPS),
        groups=len(GROUPS),
        lost=0,
        refused=len(refused),
        duplicates_handled=duplicates,
    )


async def test_nats_publish_timeout_is_never_delivered_later(private_nats: PrivateNats) -> None:
    """A publish that raised PublishTimeout while NATS was down is not delivered once NATS is
    back (nothing was left in the client's reconnect buffer); the next publish is."""
    await private_nats.serving()
    settings = {
        "EVENT_BUS_URL": private_nats.url,
        "EVENT_BUS_STREAM": "timeout",
        "EVENT_BUS_PUBLISH_TIMEOUT": 0.5,
    }
    got: list[Any] = []

    async def handle(event: Event) -> None:
        got.append(event.payload["n"])

    async with running_bus(**settings) as bus:
        await plugin(bus, "shop.Stats").subscribe("product.*", handle)
        await bus.on_boot_complete()
        publisher = plugin(bus, "shop.Products")
        await publisher.publish("product.created", {"n": 1})
        await wait_until(lambda: got == [1])
        nc = nats_backend_of(bus)._nc
        assert nc is not None
        await anyio.to_thread.run_sync(private_nats.stop, signal.SIGTERM)
        await wait_until(lambda: not nc.is_connected)
        with pytest.raises(PublishTimeout, match="not connected"):
            await publisher.publish("product.created", {"n": 2})
        private_nats.start()
        await wait_until(lambda: nc.is_connected, timeout=10)
        await publisher.publish("product.created", {"n": 3})
        await wait_until(lambda: 3 in got, timeout=10)
    assert got == [1, 3]  # in stream order: a stored 2 would have come before 3
