"""Sidecar benchmark: a route and a request/reply served by a Node.js sidecar vs by Python.

One project (every tool of this repository, in-memory settings) holds two plugins doing
the same work, formatting a price: a Python plugin (``GET /py/price``, answers
``py.price``) and a Node.js sidecar through ``tools/sidecar/node/microcore_sidecar.js``
(``GET /js/price``, answers ``js.price``). Requests go through the app in-process
(``httpx`` over ASGI, the same client for both), so the difference is what the sidecar
adds: a JSON line each way over pipes, the Node.js handler, and the wait for its answer.

For each: sequential calls (latency p50 and p99) and ``--concurrency`` callers at once
(throughput), best of ``--rounds``; the table shows the sidecar's ratio to Python.

With ``--nats URL`` the app's bus is on NATS (a stream of its own, deleted afterwards) and
a third plugin joins: the same Node.js sidecar with ``transport = "nats"`` (``GET
/nats/price``, answers ``nats.price``), its protocol messages going through the NATS
server instead of pipes. The request/reply rows then all cross the NATS bus.

    python bench/bench_sidecar.py                       # 2000 calls, 3 rounds
    python bench/bench_sidecar.py --calls 500 --rounds 1
    python bench/bench_sidecar.py --nats nats://127.0.0.1:4222
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
from _report import percentile_us, table  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402 - after the repo root is importable

from microcore.testing import start_app  # noqa: E402
from microcore.tooling import Owner  # noqa: E402

PYTHON_PLUGIN = """
from microcore import Plugin


class PricePlugin(Plugin):
    def __init__(self, http, event_bus):
        self.http, self.bus = http, event_bus

    async def on_boot(self):
        self.http.add_endpoint("/py/price", "GET", self.route)
        await self.bus.subscribe("py.price", self.answer)

    def format(self, amount):
        return {"text": f"{float(amount):.2f} EUR", "amount": float(amount)}

    async def route(self, data, context):
        return self.format(data["amount"])

    async def answer(self, event):
        return self.format(event.payload["amount"])
"""

SIDECAR_TOML = """
command = ["node", "price.js"]
transport = "@TRANSPORT@"

[env]
PREFIX = "@PRE@"

[declares]
routes = ["GET /@PRE@/price"]
responds = ["@PRE@.price"]
"""

SIDECAR_JS = """
"use strict";
const path = require("node:path");
const client = path.join(__dirname, "../../../tools/sidecar/node/microcore_sidecar.js");
const { Sidecar } = require(client);
const format = (amount) => ({ text: `${Number(amount).toFixed(2)} EUR`, amount: Number(amount) });
const pre = process.env.PREFIX;
const sidecar = new Sidecar();
sidecar.route("GET", `/${pre}/price`, async (req) => format(req.query.amount));
sidecar.respond(`${pre}.price`, async (payload) => format(payload.amount));
sidecar.start();
"""


def project(folder: Path, nats: bool) -> Path:
    root = folder / "project"
    shutil.copytree(ROOT / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    plugins = root / "domains" / "bench" / "plugins"
    plugins.mkdir(parents=True)
    (root / "domains" / "__init__.py").write_text("")
    (root / "domains" / "bench" / "__init__.py").write_text("")
    (plugins / "price_plugin.py").write_text(PYTHON_PLUGIN)
    (plugins / "price.js").write_text(SIDECAR_JS)
    toml = SIDECAR_TOML.replace("@TRANSPORT@", "stdio").replace("@PRE@", "js")
    (plugins / "price.sidecar.toml").write_text(toml)
    if nats:
        toml = SIDECAR_TOML.replace("@TRANSPORT@", "nats").replace("@PRE@", "nats")
        (plugins / "price_nats.sidecar.toml").write_text(toml)
    return root


async def measure(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> list[float]:
    """[p50 us, p99 us, calls per second with ``concurrency`` callers]."""
    for _ in range(min(200, calls)):  # warm-up
        await call()
    latencies: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    per_caller = max(1, calls // concurrency)

    async def caller() -> None:
        for _ in range(per_caller):
            await call()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(caller)
    throughput = per_caller * concurrency / (time.perf_counter() - started)
    return [percentile_us(latencies, 0.5), percentile_us(latencies, 0.99), throughput]


def best(runs: list[list[float]]) -> list[float]:
    return [min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs)]


async def main(calls: int, rounds: int, concurrency: int, nats_url: str | None) -> None:
    settings = {"LOG_LEVEL": "WARNING", "HTTP_ACCESS_LOG": "0"}
    stream = f"bench_sidecar_{uuid.uuid4().hex[:8]}"
    if nats_url:
        settings.update(EVENT_BUS_URL=nats_url, EVENT_BUS_STREAM=stream)
    with tempfile.TemporaryDirectory() as folder:
        root = project(Path(folder), bool(nats_url))
        running = await start_app(root, settings=settings)
        try:
            transport = httpx.ASGITransport(app=running.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                owner = Owner("bench.caller")
                owner.activate()
                bus = running.kernel.tool("event_bus").bind(owner)  # type: ignore[attr-defined]

                def route(path: str) -> Callable[[], Awaitable[Any]]:
                    async def call() -> None:
                        answer = await client.get(path, params={"amount": "12.5"})
                        if answer.status_code != 200:
                            raise RuntimeError(f"{path} answered {answer.status_code}")

                    return call

                def request(name: str) -> Callable[[], Awaitable[Any]]:
                    async def call() -> None:
                        await bus.request(name, {"amount": 12.5})

                    return call

                who = ["Python plugin", "Node.js sidecar (stdio)"]
                cases = {
                    "HTTP route": [route("/py/price"), route("/js/price")],
                    "request/reply": [request("py.price"), request("js.price")],
                }
                if nats_url:
                    who.append("Node.js sidecar (NATS)")
                    cases["HTTP route"].append(route("/nats/price"))
                    cases["request/reply"].append(request("nats.price"))
                rows: list[tuple[str, ...]] = []
                for name, contenders in cases.items():
                    runs: list[list[list[float]]] = [[] for _ in contenders]
                    for _ in range(rounds):  # alternated, so all see the same machine
                        for index, call in enumerate(contenders):
                            runs[index].append(await measure(call, calls, concurrency))
                    results = [best(r) for r in runs]
                    py = results[0]
                    for label, value in zip(who, results, strict=True):
                        rows.append(
                            (
                                f"{name}: {label}",
                                f"{value[0]:.0f}",
                                f"{value[1]:.0f}",
                                f"{value[2]:.0f}",
                                f"{value[2] / py[2]:.2f}",
                            )
                        )
        finally:
            await running.stop()
            if nats_url:
                await delete_stream(nats_url, stream)
    bus = "NATS bus" if nats_url else "in-process bus"
    print(
        table(
            f"Sidecar vs Python ({calls} calls, best of {rounds}, "
            f"{concurrency} concurrent callers, {bus})",
            ("case", "p50 us", "p99 us", "calls/s", "x Python"),
            rows,
        )
    )


async def delete_stream(url: str, stream: str) -> None:
    import nats

    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await client.jsm().delete_stream(stream)
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--nats", metavar="URL", help="the bus on NATS, plus a NATS sidecar")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds, args.concurrency, args.nats)
