"""Benchmark: the scale-out drivers side by side with the in-process defaults, in one run.

    python bench/bench_scaleout.py [--events 20000] [--requests 3000] [--rounds 5]
                                   [--duration 5] [--connections 32] [--skip-http]

Event bus (``EVENT_BUS_URL=memory://`` and ``nats://`` beside raw nats-py against the same
server, in this process on the test kernel used by the bus's own tests; the median of
``--rounds``, the three alternating round by round so they see the same machine load):

* publish -> 1 subscriber: events/s, from the first publish until the handler saw them all
  (on NATS every publish waits for JetStream to store the event, deduplicated by event id,
  and the subscriber acks each event once handled);
* 8 concurrent publishers -> 1 subscriber: the same with publishes in flight together;
* request/reply: round trips/s, p50 and p99 latency (core NATS, not stored).

The raw nats-py floor does the least the same transport needs, one connection: acked
JetStream publishes (``js.publish`` with a ``Nats-Msg-Id`` header to a file stream, one
at a time, then 8 in flight, no consumer) and core request/reply (``nc.request`` against
a ``subscribe`` callback that answers with ``msg.respond``). ``nats:// vs raw`` is
microcore over NATS as a fraction of it (for latencies: raw over microcore).

For reference only, ``raw + subscriber`` is the same raw publishing with what the bus's
rows also do and the floor does not: a durable push consumer on the same connection whose
callback decodes and acks each event, timed until it saw them all (``vs raw +
subscriber``: microcore over NATS as a fraction of that).

HTTP (``POST /products`` of the example app: validate, insert, publish ``product.created``,
which ProductStatsPlugin counts in the state tool): ``uvicorn app:app`` of this repository,
one process, ``MICROCORE_ENV=production``, ``LOG_LEVEL=WARNING``, loaded over loopback with
``wrk -t1 -c<connections> -d<duration>s`` after a 2 s warm-up, for:

* defaults: SQLite file, memory bus, memory state;
* PostgreSQL: ``DATABASE_URL=postgresql://`` (a fresh schema), memory bus and state;
* scale-out: PostgreSQL, NATS and Redis, as each replica of a fleet runs.

Services come from ``MICROCORE_TEST_POSTGRES`` (``postgresql://postgres@127.0.0.1:5432/test``),
``MICROCORE_TEST_NATS`` (``nats://127.0.0.1:4222``), ``MICROCORE_TEST_REDIS``
(``redis://127.0.0.1:6379/15``); rows whose service does not answer say so. Everything the
run creates (schema, streams, keys) is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import msgspec
from _report import UNIQUE_PRODUCTS_LUA, percentile_us, table  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microcore import Event  # noqa: E402 - after the repo root is importable
from microcore._core.logs import configure_logging  # noqa: E402
from microcore.tooling import Owner  # noqa: E402
from tools.config.config_tool import ConfigTool  # noqa: E402
from tools.event_bus import EventBus  # noqa: E402
from tools.event_bus.event_bus_tool import EventBusTool  # noqa: E402

POSTGRES = os.environ.get("MICROCORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NATS = os.environ.get("MICROCORE_TEST_NATS", "nats://127.0.0.1:4222")
REDIS = os.environ.get("MICROCORE_TEST_REDIS", "redis://127.0.0.1:6379/15")
PAYLOAD = {"id": 1, "name": "Pen", "price": 2.5}
PUBLISHERS = 8
TAG = uuid.uuid4().hex[:8]


def down(url: str, default_port: int) -> str | None:
    """Why the service at ``url`` is not reachable, or None."""
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ).close()
    except OSError as exc:
        return f"{parts.hostname}:{parts.port or default_port} not reachable ({exc})"
    return None


# -- event bus ------------------------------------------------------------------------------


class _Kernel:
    def __init__(self, tg: anyio.abc.TaskGroup, settings: dict[str, str]) -> None:
        self._tg = tg
        self.settings = settings

    def start_background(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        self._tg.start_soon(fn, *args, name=name)


def _handle(bus: EventBusTool, identity: str) -> EventBus:
    owner = Owner(identity)
    owner.activate()
    return bus.bind(owner)


STREAMS: list[str] = []


def bus_settings(driver: str) -> dict[str, str]:
    if driver == "memory":
        return {}
    stream = f"bench_{TAG}_{len(STREAMS)}"
    STREAMS.append(stream)
    return {"EVENT_BUS_URL": NATS, "EVENT_BUS_STREAM": stream}


async def with_bus(driver: str, run: Callable[[EventBusTool], Awaitable[Any]]) -> Any:
    async with anyio.create_task_group() as tg:
        kernel = _Kernel(tg, bus_settings(driver))
        bus = EventBusTool(ConfigTool(kernel), kernel)  # type: ignore[arg-type]
        await bus.setup()
        try:
            return await run(bus)
        finally:
            await bus.drain()
            await bus.shutdown()
            tg.cancel_scope.cancel()


async def publish_rate(driver: str, n: int, publishers: int) -> float:
    async def run(bus: EventBusTool) -> float:
        done = anyio.Event()
        seen = [0]

        async def handler(event: Event) -> None:
            seen[0] += 1
            if seen[0] == n:
                done.set()

        await _handle(bus, "bench.Sub").subscribe("bench.event", handler)
        await bus.on_boot_complete()
        publish = _handle(bus, "bench.Publisher").publish
        share = n // publishers

        async def produce(count: int) -> None:
            for _ in range(count):
                await publish("bench.event", PAYLOAD)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(publishers):
                tg.start_soon(produce, share + (n - share * publishers if index == 0 else 0))
        await done.wait()
        return n / (time.perf_counter() - started)

    rate: float = await with_bus(driver, run)
    return rate


async def request_rate(driver: str, n: int) -> tuple[float, list[float]]:
    async def run(bus: EventBusTool) -> tuple[float, list[float]]:
        async def respond(event: Event) -> Any:
            return event.payload

        await _handle(bus, "bench.Responder").subscribe("bench.rpc", respond)
        await bus.on_boot_complete()
        request = _handle(bus, "bench.Client").request
        latencies: list[float] = []
        perf = time.perf_counter
        started = perf()
        for _ in range(n):
            t0 = perf()
            await request("bench.rpc", PAYLOAD)
            latencies.append(perf() - t0)
        return n / (perf() - started), latencies

    result: tuple[float, list[float]] = await with_bus(driver, run)
    return result


async def _raw_stream(client: Any) -> tuple[Any, str]:
    """A fresh file-backed JetStream stream for one raw row: its context and subject."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    stream = f"bench_{TAG}_raw{len(STREAMS)}"
    STREAMS.append(stream)
    js = client.jetstream()
    await js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[f"{stream}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
    )
    return js, f"{stream}.bench.event"


async def _raw_publish(js: Any, subject: str, n: int, publishers: int) -> float:
    """Acked, deduplicated publishes of ``n`` events by ``publishers`` tasks; the start time."""
    data = msgspec.msgpack.encode(PAYLOAD)
    share = n // publishers
    prefix = uuid.uuid4().hex

    async def produce(index: int, count: int) -> None:
        for i in range(count):
            await js.publish(subject, data, headers={"Nats-Msg-Id": f"{prefix}{index}.{i}"})

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(publishers):
            tg.start_soon(produce, index, share + (n - share * publishers if index == 0 else 0))
    return started


async def raw_publish_rate(n: int, publishers: int) -> float:
    """Raw nats-py: acked, deduplicated JetStream publishes (``publishers`` in flight)."""
    import nats

    client = await nats.connect(NATS)
    try:
        js, subject = await _raw_stream(client)
        started = await _raw_publish(js, subject, n, publishers)
        return n / (time.perf_counter() - started)
    finally:
        await client.close()


async def raw_consumed_rate(n: int, publishers: int) -> float:
    """Raw nats-py with a subscriber: the same publishes, and a durable push consumer on the
    same connection whose callback acks each event; until it saw them all (reference only)."""
    import nats
    from nats.aio.msg import Msg
    from nats.js.api import AckPolicy, ConsumerConfig

    client = await nats.connect(NATS)
    try:
        js, subject = await _raw_stream(client)
        done = anyio.Event()
        seen = [0]

        async def handle(msg: Msg) -> None:
            msgspec.msgpack.decode(msg.data)
            await msg.ack()
            seen[0] += 1
            if seen[0] == n:
                done.set()

        await js.subscribe(
            subject,
            durable="bench",
            cb=handle,
            manual_ack=True,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1024),
        )
        started = await _raw_publish(js, subject, n, publishers)
        await done.wait()
        return n / (time.perf_counter() - started)
    finally:
        await client.close()


async def raw_request_rate(n: int) -> tuple[float, list[float]]:
    """Raw nats-py: core request/reply, one connection, a callback answering each request."""
    import nats
    from nats.aio.msg import Msg

    client = await nats.connect(NATS)
    try:
        subject = f"bench_{TAG}_req.bench.rpc"

        async def respond(msg: Msg) -> None:
            await msg.respond(msg.data)

        await client.subscribe(subject, cb=respond)
        await client.flush()
        data = msgspec.msgpack.encode(PAYLOAD)
        latencies: list[float] = []
        perf = time.perf_counter
        started = perf()
        for _ in range(n):
            t0 = perf()
            await client.request(subject, data, timeout=5)
            latencies.append(perf() - t0)
        return n / (perf() - started), latencies
    finally:
        await client.close()


async def bus_rows(events: int, requests: int, rounds: int) -> list[tuple[str, ...]]:
    reason = down(NATS, 4222)
    rows: list[tuple[str, ...]] = []
    median = statistics.median

    for publishers, label in (
        (1, "publish -> 1 subscriber"),
        (PUBLISHERS, f"{PUBLISHERS} publishers -> 1 subscriber"),
    ):
        runs: list[tuple[float, float, float, float]] = []
        for _ in range(rounds):  # alternated: all of them see the same load
            memory = await publish_rate("memory", events, publishers)
            if reason:
                runs.append((memory, 0.0, 0.0, 0.0))
                continue
            raw = await raw_publish_rate(events, publishers)
            consumed = await raw_consumed_rate(events, publishers)
            runs.append((memory, raw, consumed, await publish_rate("nats", events, publishers)))
        memory, raw, consumed, nats = (median(r[i] for r in runs) for i in range(4))
        if reason:
            rows.append((f"{label}, events/s", f"{memory:,.0f}", reason, "-", "-", "-", "-"))
            continue
        rows.append(
            (
                f"{label}, events/s",
                f"{memory:,.0f}",
                f"{raw:,.0f}",
                f"{consumed:,.0f}",
                f"{nats:,.0f}",
                f"{nats / raw:.2f}x",
                f"{nats / consumed:.2f}x",
            )
        )

    memory_runs, raw_runs, nats_runs = [], [], []
    for _ in range(rounds):
        memory_runs.append(await request_rate("memory", requests))
        if not reason:
            raw_runs.append(await raw_request_rate(requests))
            nats_runs.append(await request_rate("nats", requests))
    memory_rate = median(r[0] for r in memory_runs)
    if reason:
        rows.append(
            ("request/reply, round trips/s", f"{memory_rate:,.0f}", reason, "-", "-", "-", "-")
        )
        return rows
    raw_rate, nats_rate = median(r[0] for r in raw_runs), median(r[0] for r in nats_runs)
    rows.append(
        (
            "request/reply, round trips/s",
            f"{memory_rate:,.0f}",
            f"{raw_rate:,.0f}",
            "-",
            f"{nats_rate:,.0f}",
            f"{nats_rate / raw_rate:.2f}x",
            "-",
        )
    )
    lats = [[x for r in runs for x in r[1]] for runs in (memory_runs, raw_runs, nats_runs)]
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        m, r, n = (percentile_us(lat, q) for lat in lats)
        rows.append(
            (
                f"request/reply {label} latency, us (lower wins)",
                f"{m:.1f}",
                f"{r:.1f}",
                "-",
                f"{n:.1f}",
                f"{r / n:.2f}x",
                "-",
            )
        )
    return rows


# -- HTTP ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn app:app`` of this repository with ``env``; stopped by :meth:`stop`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--host",
                "127.0.0.1",
                f"--port={self.port}",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "MICROCORE_ENV": "production",
                "AUTH_SECRET": "bench-scaleout-signing-secret-" + "s" * 32,  # else not ready
                "LOG_LEVEL": "WARNING",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {log}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/system/health", timeout=1
                ):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling a server that is starting

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
        self._log.close()


def wrk(port: int, lua: Path, *, seconds: int, connections: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua)]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/products"], capture_output=True, text=True, check=True
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99_ms": float(p99.group(1)) * units[p99.group(2)] if p99 else float("nan"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


async def _schema(create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        verb = (
            f"CREATE SCHEMA bench_{TAG}" if create else f"DROP SCHEMA IF EXISTS bench_{TAG} CASCADE"
        )
        await conn.execute(verb)
    finally:
        await conn.close()


def http_rows(workdir: Path, *, seconds: int, connections: int) -> list[tuple[str, ...]]:
    lua = workdir / "post.lua"
    lua.write_text(UNIQUE_PRODUCTS_LUA)
    pg_url = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}search_path=bench_{TAG}"
    setups: list[tuple[str, dict[str, str], str | None]] = [
        (
            "defaults: sqlite + memory bus + memory state",
            {"DATABASE_URL": f"sqlite:///{workdir}/bench.db"},
            None,
        ),
        ("postgresql + memory bus + memory state", {"DATABASE_URL": pg_url}, down(POSTGRES, 5432)),
        (
            "postgresql + nats + redis (one replica)",
            {
                "DATABASE_URL": pg_url,
                "EVENT_BUS_URL": NATS,
                "EVENT_BUS_STREAM": f"bench_{TAG}_http",
                "STATE_URL": REDIS,
                "STATE_PREFIX": f"bench-{TAG}",
            },
            down(POSTGRES, 5432) or down(NATS, 4222) or down(REDIS, 6379),
        ),
    ]
    STREAMS.append(f"bench_{TAG}_http")
    rows: list[tuple[str, ...]] = []
    base = 0.0
    for index, (label, env, reason) in enumerate(setups):
        if reason:
            rows.append((label, "-", "-", "-", reason))
            continue
        if env["DATABASE_URL"] == pg_url:
            anyio.run(_schema, False)
            anyio.run(_schema, True)
        server = Server(env, workdir / f"server{index}.log")
        try:
            wrk(server.port, lua, seconds=2, connections=connections)  # warm-up
            result = wrk(server.port, lua, seconds=seconds, connections=connections)
        finally:
            server.stop()
        base = base or result["rps"]
        rows.append(
            (
                label,
                f"{result['rps']:,.0f}",
                f"{result['p99_ms']:.1f}",
                f"{result['rps'] / base:.2f}x",
                f"{result['errors']:.0f} non-2xx" if result["errors"] else "",
            )
        )
    return rows


# -- cleanup and report ----------------------------------------------------------------------------


async def clean_up() -> None:
    if STREAMS and not down(NATS, 4222):
        import nats
        import nats.js.errors

        client = await nats.connect(NATS, connect_timeout=2, max_reconnect_attempts=0)
        try:
            for stream in STREAMS:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await client.jsm().delete_stream(stream)
        finally:
            await client.close()
    if not down(POSTGRES, 5432):
        await _schema(False)
    if not down(REDIS, 6379):
        import redis.asyncio as redis

        store = redis.Redis.from_url(REDIS)
        try:
            keys = [key async for key in store.scan_iter(match=f"bench-{TAG}:*")]
            if keys:
                await store.delete(*keys)
        finally:
            await store.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per HTTP measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    configure_logging(level="WARNING")  # the table only (connect/close lines are info)
    try:
        rows = anyio.run(bus_rows, args.events, args.requests, args.rounds)
        sys.stdout.write(
            table(
                f"event bus: {args.events:,} events, {args.requests:,} requests, median of "
                f"{args.rounds}, Python {sys.version.split()[0]}",
                (
                    "scenario",
                    "memory://",
                    "raw nats-py",
                    "raw + subscriber",
                    "nats://",
                    "nats:// vs raw",
                    "vs raw + subscriber",
                ),
                rows,
            )
        )
        if not args.skip_http:
            with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as workdir:
                rows = http_rows(Path(workdir), seconds=args.duration, connections=args.connections)
            sys.stdout.write(
                "\n"
                + table(
                    f"POST /products: wrk -t1 -c{args.connections} -d{args.duration}s, "
                    "one uvicorn process",
                    ("setup", "requests/s", "p99 ms", "vs defaults", "note"),
                    rows,
                )
            )
    finally:
        anyio.run(clean_up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
