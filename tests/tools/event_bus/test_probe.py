"""Readiness of the event bus: its probe says whether the transport carries events now."""

from __future__ import annotations

import anyio

from tests.support import eventually
from tests.tools.event_bus.conftest import BusFactory, PrivateNats


async def test_bus_probe_in_process_is_always_ready(new_memory_bus: BusFactory) -> None:
    """The in-process bus has nothing to lose touch with."""
    async with new_memory_bus() as bus:
        assert await bus.probe() is None


async def test_bus_probe_follows_the_nats_connection(
    private_nats: PrivateNats, make_bus: BusFactory
) -> None:
    """On NATS the probe is None while connected, says so while NATS is down, and is None
    again once the client has reconnected."""
    await private_nats.serving()
    async with make_bus(EVENT_BUS_URL=private_nats.url, EVENT_BUS_STREAM="probe") as bus:
        assert await bus.probe() is None
        await anyio.to_thread.run_sync(private_nats.stop)
        await eventually(bus.probe, timeout=10)
        assert await bus.probe() == "NATS is not connected (reconnecting)"
        private_nats.start()

        async def connected() -> bool:
            return await bus.probe() is None

        await eventually(connected, timeout=15)
