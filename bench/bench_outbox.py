"""Benchmark the transactional outbox against a plain publish, in the same run.

    python bench/bench_outbox.py [--requests 2000] [--repeat 3]
        [--database-url postgresql://...] [--bus-url nats://127.0.0.1:4222]

One "request" is what the example's ``POST /products`` does, three ways:

* plain: ``db.execute(INSERT)`` (autocommit), then ``bus.publish`` (the old plugin)
* tx + publish after: ``async with db.transaction()`` (INSERT), then ``bus.publish``
* outbox: ``async with db.transaction() as tx`` (INSERT, ``publish(..., transaction=tx)``);
  the event is relayed after the commit by the bus's relay task

"answer" is the time until the request's code returns (what the HTTP client waits for);
"all handled" is the wall time until a subscriber has handled every event, divided by
the number of requests (the relay's work, the outbox row's DELETE included). Best of
``--repeat`` runs per way, the ways alternating so drift hits each. The run's table and
NATS stream are removed; the outbox table stays (empty) in the database.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import percentile_us, table  # noqa: E402 - needs the repository on sys.path
from microcore import Event  # noqa: E402
from microcore.testing import Kernel  # noqa: E402
from microcore.tooling import Owner  # noqa: E402

INSERT = "INSERT INTO products (name, price) VALUES (?, ?)"
SCHEMA = {
    "sqlite": "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL)",
    "postgresql": "CREATE TABLE products (id SERIAL PRIMARY KEY, name TEXT, price REAL)",
}

Request = Callable[[int], Awaitable[None]]


def _project(base: Path) -> Path:
    root = base / "project"
    for name in ("config", "logger", "db", "event_bus"):
        shutil.copytree(REPO / "tools" / name, root / "tools" / name)
    return root


class Bench:
    def __init__(self, db: Any, bus: Any) -> None:
        self.db, self.bus = db, bus
        self.handled = 0
        self.target = 0
        self.all_handled = anyio.Event()

    async def on_created(self, event: Event) -> None:
        self.handled += 1
        if self.handled >= self.target:
            self.all_handled.set()

    async def plain(self, n: int) -> None:
        product_id = await self.db.execute(INSERT, (f"p{n}", 1.0))
        await self.bus.publish("product.created", {"id": product_id})

    async def tx_then_publish(self, n: int) -> None:
        async with self.db.transaction() as tx:
            product_id = await tx.execute(INSERT, (f"p{n}", 1.0))
        await self.bus.publish("product.created", {"id": product_id})

    async def outbox(self, n: int) -> None:
        async with self.db.transaction() as tx:
            product_id = await tx.execute(INSERT, (f"p{n}", 1.0))
            await self.bus.publish("product.created", {"id": product_id}, transaction=tx)

    async def run(self, request: Request, count: int) -> tuple[list[float], float]:
        """Per-request answer times, and the wall time until every event was handled."""
        self.target = self.handled + count
        self.all_handled = anyio.Event()
        answers: list[float] = []
        started = time.perf_counter()
        for n in range(count):
            t0 = time.perf_counter()
            await request(n)
            answers.append(time.perf_counter() - t0)
        with anyio.fail_after(120):
            await self.all_handled.wait()
        return answers, time.perf_counter() - started


async def _delete_stream(url: str, stream: str) -> None:
    """Leave the NATS server as it was: the run's stream goes."""
    import nats

    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await client.jsm().delete_stream(stream)
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default="sqlite:///bench.db")
    parser.add_argument("--bus-url", default="memory://")
    args = parser.parse_args()
    settings = {
        "DATABASE_URL": args.database_url,
        "EVENT_BUS_URL": args.bus_url,
        "EVENT_BUS_STREAM": f"bench_{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "WARNING",
    }
    dialect = "postgresql" if args.database_url.startswith("postgres") else "sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        kernel = Kernel(_project(Path(tmp)), environ={}, overrides=settings)
        async with kernel.run():
            db: Any = kernel.tool("db")
            bus_tool: Any = kernel.tool("event_bus")
            await db.execute("DROP TABLE IF EXISTS products")
            await db.execute(SCHEMA[dialect])
            owner = Owner("bench.Writer")
            owner.activate()
            bench = Bench(db, bus_tool.bind(owner))
            await bus_tool.bind(owner).subscribe("product.created", bench.on_created)
            await bus_tool.on_boot_complete()
            ways: dict[str, Request] = {
                "plain (insert, publish)": bench.plain,
                "tx + publish after": bench.tx_then_publish,
                "outbox (publish in tx)": bench.outbox,
            }
            await bench.run(bench.outbox, 200)  # warm up every path
            await bench.run(bench.plain, 200)
            best: dict[str, tuple[list[float], float]] = {}
            for _ in range(args.repeat):
                for name, way in ways.items():
                    answers, wall = await bench.run(way, args.requests)
                    if name not in best or wall < best[name][1]:
                        best[name] = (answers, wall)
            depth = await bus_tool.outbox_depth()
            await db.execute("DROP TABLE products")
    if args.bus_url.startswith("nats"):
        await _delete_stream(args.bus_url, settings["EVENT_BUS_STREAM"])
    base = sum(best["plain (insert, publish)"][0]) / args.requests
    rows: list[tuple[str, ...]] = []
    for name, (answers, wall) in best.items():
        mean = sum(answers) / len(answers)
        rows.append(
            (
                name,
                f"{mean * 1e6:,.0f}",
                f"{percentile_us(answers, 0.5):,.0f}",
                f"{percentile_us(answers, 0.99):,.0f}",
                f"{(mean - base) * 1e6:+,.0f}",
                f"{wall / args.requests * 1e6:,.0f}",
            )
        )
    title = (
        f"outbox vs plain publish: {args.requests} requests, best of {args.repeat}; "
        f"db {dialect}, bus {args.bus_url.split('://')[0]}; outbox left: {depth} rows"
    )
    header = ("way", "answer µs", "p50", "p99", "vs plain", "all handled µs/req")
    sys.stdout.write(table(title, header, rows))


if __name__ == "__main__":
    anyio.run(main)
