"""Sidecar benchmark: a route and a request/reply served by a Node.js sidecar vs by Python.

One project (every tool of this repository, in-memory settings) holds two plugins doing
the same work, formatting a price: a Python plugin (``GET /py/price``, answers
``py.price``) and a Node.js sidecar through ``tools/sidecar/node/microcore_sidecar.js``
(``GET /js/price``, answers ``js.price``). Requests go through the app in-process
(``httpx`` over ASGI, the same client for both), so the difference is what the sidecar
adds: a JSON line each way over pipes, the Node.js handler, and the wait for its answer.

For each: sequential calls (latency p50 and p99) and ``--concurrency`` callers at once
(throughput), best of ``--rounds``; the table shows the sidecar's ratio to Python.

    python bench/bench_sidecar.py                       # 2000 calls, 3 rounds
    python bench/bench_sidecar.py --calls 500 --rounds 1
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
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

[declares]
routes = ["GET /js/price"]
responds = ["js.price"]
"""

SIDECAR_JS = """
"use strict";
const path = require("node:path");
const client = path.join(__dirname, "../../../tools/sidecar/node/microcore_sidecar.js");
const { Sidecar } = require(client);
const format = (amount) => ({ text: `${Number(amount).toFixed(2)} EUR`, amount: Number(amount) });
const sidecar = new Sidecar();
sidecar.route("GET", "/js/price", async (req) => format(req.query.amount));
sidecar.respond("js.price", async (payload) => format(payload.amount));
sidecar.start();
"""


def project(folder: Path) -> Path:
    root = folder / "project"
    shutil.copytree(ROOT / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    plugins = root / "domains" / "bench" / "plugins"
    plugins.mkdir(parents=True)
    (root / "domains" / "__init__.py").write_text("")
    (root / "domains" / "bench" / "__init__.py").write_text("")
    (plugins / "price_plugin.py").write_text(PYTHON_PLUGIN)
    (plugins / "price.sidecar.toml").write_text(SIDECAR_TOML)
    (plugins / "price.js").write_text(SIDECAR_JS)
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


async def main(calls: int, rounds: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = project(Path(folder))
        running = await start_app(root, settings={"LOG_LEVEL": "WARNING", "HTTP_ACCESS_LOG": "0"})
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

                cases = {
                    "HTTP route": (route("/py/price"), route("/js/price")),
                    "request/reply": (request("py.price"), request("js.price")),
                }
                rows: list[tuple[str, ...]] = []
                for name, (python, sidecar) in cases.items():
                    py_runs, js_runs = [], []
                    for _ in range(rounds):  # alternated, so both see the same machine
                        py_runs.append(await measure(python, calls, concurrency))
                        js_runs.append(await measure(sidecar, calls, concurrency))
                    py, js = best(py_runs), best(js_runs)
                    for who, value in (("Python plugin", py), ("Node.js sidecar", js)):
                        rows.append(
                            (
                                f"{name}: {who}",
                                f"{value[0]:.0f}",
                                f"{value[1]:.0f}",
                                f"{value[2]:.0f}",
                                f"{value[2] / py[2]:.2f}",
                            )
                        )
        finally:
            await running.stop()
    print(
        table(
            f"Sidecar vs Python ({calls} calls, best of {rounds}, "
            f"{concurrency} concurrent callers)",
            ("case", "p50 us", "p99 us", "calls/s", "x Python"),
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds, args.concurrency)
