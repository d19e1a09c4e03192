"""Benchmark: the event bus against a bare anyio memory-stream loop, in the same run.

    python bench/bench_bus.py [--events 100000] [--requests 20000] [--rounds 5]

Scenarios (the median of ``--rounds``; baseline and bus alternate round by round, so
both see the same machine load):

* publish -> 1 subscriber: events/s until the subscriber has seen them all;
* publish -> 10 subscribers: published events/s (each delivered 10 times);
* publish -> 1 pattern subscriber (``bench.*``), and -> 10 pattern subscribers
  (``bench.*`` and ``bench.>``, alternately): the same, matched by wildcard;
* request/reply: round trips/s, p50 and p99 latency (p99 over every round's requests).

The baseline moves the same payload through ``anyio.create_memory_object_stream``
with the bus's buffer size: ``send`` in a loop and ``async for`` in a consumer
task (one stream per subscriber; a bare stream matches no patterns, so the pattern
rows compare with the same baseline); request/reply is a request stream and a reply
stream. The last row is information, not a target: the same stream driven with
``send_nowait``/``receive_nowait`` (no checkpoint per item), the most a loop that
moves items through an anyio stream could do.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from _report import percentile_us, table  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microcore import Event  # noqa: E402 - after the repo root is importable
from microcore.tooling import Owner  # noqa: E402
from tools.config.config_tool import ConfigTool  # noqa: E402
from tools.event_bus import EventBus  # noqa: E402
from tools.event_bus.event_bus_tool import EventBusTool  # noqa: E402

BUFFER = 1024
PAYLOAD = {"id": 1, "name": "Pen", "price": 2.5}


class _Kernel:
    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.settings = {"EVENT_BUS_BUFFER": str(BUFFER)}

    def start_background(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        self._tg.start_soon(fn, *args, name=name)


def _handle(bus: EventBusTool, identity: str) -> EventBus:
    owner = Owner(identity)
    owner.activate()
    return bus.bind(owner)


# -- baseline -------------------------------------------------------------------


async def baseline_fanout(n: int, subscribers: int) -> float:
    done = anyio.Event()
    remaining = [subscribers]
    async with anyio.create_task_group() as tg:
        sends = []
        for _ in range(subscribers):
            send, receive = anyio.create_memory_object_stream[Any](BUFFER)
            sends.append(send)

            async def consume(receive: Any = receive) -> None:
                seen = 0
                async with receive:
                    async for _item in receive:
                        seen += 1
                        if seen == n:
                            remaining[0] -= 1
                            if not remaining[0]:
                                done.set()

            tg.start_soon(consume)
        started = time.perf_counter()
        for _ in range(n):
            for send in sends:
                await send.send(PAYLOAD)
        await done.wait()
        elapsed = time.perf_counter() - started
        for send in sends:
            await send.aclose()
    return n / elapsed


async def floor_nowait(n: int) -> float:
    """Informational: the stream without a checkpoint per item (batches, as the bus does)."""
    send, receive = anyio.create_memory_object_stream[Any](BUFFER)
    done = anyio.Event()

    async def consume() -> None:
        seen = 0
        while True:
            try:
                receive.receive_nowait()
            except anyio.WouldBlock:
                try:
                    await receive.receive()
                except anyio.EndOfStream:
                    return
            seen += 1
            if seen == n:
                done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        started = time.perf_counter()
        for _ in range(n):
            try:
                send.send_nowait(PAYLOAD)
            except anyio.WouldBlock:
                await send.send(PAYLOAD)
        await done.wait()
        elapsed = time.perf_counter() - started
        send.close()
    return n / elapsed


async def baseline_request(n: int) -> tuple[float, list[float]]:
    req_send, req_recv = anyio.create_memory_object_stream[Any](BUFFER)
    rep_send, rep_recv = anyio.create_memory_object_stream[Any](BUFFER)
    latencies: list[float] = []
    async with anyio.create_task_group() as tg:

        async def server() -> None:
            async with req_recv, rep_send:
                async for item in req_recv:
                    await rep_send.send(item)

        tg.start_soon(server)
        perf = time.perf_counter
        started = perf()
        for _ in range(n):
            t0 = perf()
            await req_send.send(PAYLOAD)
            await rep_recv.receive()
            latencies.append(perf() - t0)
        elapsed = perf() - started
        await req_send.aclose()
        await rep_recv.aclose()
    return n / elapsed, latencies


# -- the bus --------------------------------------------------------------------


async def with_bus(run: Callable[[EventBusTool], Awaitable[Any]]) -> Any:
    async with anyio.create_task_group() as tg:
        kernel = _Kernel(tg)
        bus = EventBusTool(ConfigTool(kernel), kernel)  # type: ignore[arg-type]
        await bus.setup()
        try:
            return await run(bus)
        finally:
            await bus.drain()
            await bus.shutdown()
            tg.cancel_scope.cancel()


async def bus_fanout(
    n: int, subscribers: int, patterns: tuple[str, ...] = ("bench.event",)
) -> float:
    async def run(bus: EventBusTool) -> float:
        done = anyio.Event()
        remaining = [subscribers]
        for index in range(subscribers):
            seen = [0]

            async def handler(event: Event, seen: list[int] = seen) -> None:
                seen[0] += 1
                if seen[0] == n:
                    remaining[0] -= 1
                    if not remaining[0]:
                        done.set()

            pattern = patterns[index % len(patterns)]
            await _handle(bus, f"bench.Sub{index}").subscribe(pattern, handler)
        publisher = _handle(bus, "bench.Publisher")
        publish = publisher.publish
        started = time.perf_counter()
        for _ in range(n):
            await publish("bench.event", PAYLOAD)
        await done.wait()
        return n / (time.perf_counter() - started)

    rate: float = await with_bus(run)
    return rate


async def bus_request(n: int) -> tuple[float, list[float]]:
    async def run(bus: EventBusTool) -> tuple[float, list[float]]:
        async def respond(event: Event) -> Any:
            return event.payload

        await _handle(bus, "bench.Responder").subscribe("bench.rpc", respond)
        request = _handle(bus, "bench.Client").request
        latencies: list[float] = []
        perf = time.perf_counter
        started = perf()
        for _ in range(n):
            t0 = perf()
            await request("bench.rpc", PAYLOAD)
            latencies.append(perf() - t0)
        return n / (perf() - started), latencies

    result: tuple[float, list[float]] = await with_bus(run)
    return result


# -- report ---------------------------------------------------------------------


async def main(events: int, requests: int, rounds: int) -> None:
    rows: list[tuple[str, ...]] = []

    async def median(
        base: Callable[[], Awaitable[float]], mine: Callable[[], Awaitable[float]]
    ) -> tuple[float, float]:
        pairs = []
        for _ in range(rounds):  # alternated: both see the same load
            gc.collect()
            b = await base()
            gc.collect()
            pairs.append((b, await mine()))
        return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)

    exact, wild = ("bench.event",), ("bench.*", "bench.>")
    for label, subscribers, patterns in (
        ("publish -> 1 subscriber", 1, exact),
        ("publish -> 10 subscribers", 10, exact),
        ("publish -> 1 pattern subscriber (bench.*)", 1, wild),
        ("publish -> 10 pattern subscribers (bench.*, bench.>)", 10, wild),
    ):
        base, mine = await median(
            lambda s=subscribers: baseline_fanout(events, s),  # type: ignore[misc]
            lambda s=subscribers, p=patterns: bus_fanout(events, s, p),  # type: ignore[misc]
        )
        rows.append((f"{label}, events/s", f"{base:,.0f}", f"{mine:,.0f}", f"{mine / base:.2f}x"))

    base_runs, bus_runs = [], []
    for _ in range(rounds):
        gc.collect()
        base_runs.append(await baseline_request(requests))
        gc.collect()
        bus_runs.append(await bus_request(requests))
    base_rate = statistics.median(r[0] for r in base_runs)
    bus_rate = statistics.median(r[0] for r in bus_runs)
    base_lat = [x for r in base_runs for x in r[1]]
    bus_lat = [x for r in bus_runs for x in r[1]]
    rows.append(
        (
            "request/reply, round trips/s",
            f"{base_rate:,.0f}",
            f"{bus_rate:,.0f}",
            f"{bus_rate / base_rate:.2f}x",
        )
    )
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        b, m = percentile_us(base_lat, q), percentile_us(bus_lat, q)
        rows.append(
            (
                f"request/reply {label} latency, us (lower wins)",
                f"{b:.1f}",
                f"{m:.1f}",
                f"{m / b:.2f}x",
            )
        )
    floor, mine = await median(
        lambda: floor_nowait(events),
        lambda: bus_fanout(events, 1),
    )
    rows.append(
        (
            "info: publish -> 1 vs send_nowait/receive_nowait",
            f"{floor:,.0f}",
            f"{mine:,.0f}",
            f"{mine / floor:.2f}x",
        )
    )

    title = (
        f"event bus benchmark: {events:,} events, {requests:,} requests, median of {rounds}, "
        f"buffer {BUFFER}, Python {sys.version.split()[0]}"
    )
    sys.stdout.write(table(title, ("scenario", "anyio baseline", "event_bus", "ratio"), rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.events, args.requests, args.rounds)
