"""Two replicas: two `uvicorn app:app` processes sharing PostgreSQL, NATS and Redis.

The example app runs unchanged; only the URLs differ from a one-process setup.
Each replica gets a copy of the project with a test-only ``probe`` domain: a
plugin that records, in the shared state, which replica handled each
``product.created`` and how often, and asks ``replica.whoami``, which only
replica B answers. Each test has its own PostgreSQL schema, JetStream stream
and Redis key prefix, removed afterwards. A service that does not answer skips
the test (fails it under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from tests.support import NATS_URL, delete_stream, free_port, wait_until_serving
from tests.tools.conftest import POSTGRES_URL, REDIS_URL, require_service, with_query

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import anyio
from microcore import Plugin


class ProbePlugin(Plugin):
    \"\"\"Counts, per product name, how often product.created was handled and where.\"\"\"

    def __init__(self, http, event_bus, state, config):
        self.http, self.bus, self.state, self.config = http, event_bus, state, config

    async def on_boot(self):
        self.replica = self.config.get("REPLICA_NAME", "?")
        self.delay = float(self.config.get("PROBE_DELAY") or 0)
        await self.bus.subscribe("product.created", self.on_created)
        self.http.add_endpoint("/probe/handled", "GET", self.handled)
        self.http.add_endpoint("/probe/ask", "GET", self.ask)

    async def on_created(self, event):
        await self.state.set("probe_started", f"{self.replica}:{event.payload['name']}", 1)
        if self.delay:
            await anyio.sleep(self.delay)  # a handler that takes a while
        name = event.payload["name"]
        await self.state.incr("probe_count", name)
        await self.state.set("probe_by", name, self.replica)

    async def handled(self, data, context):
        if data.get("started"):
            return sorted(await self.state.keys("probe_started"))
        names = await self.state.keys("probe_count")
        return {
            name: {
                "count": await self.state.get("probe_count", name),
                "by": await self.state.get("probe_by", name),
            }
            for name in names
        }

    async def ask(self, data, context):
        return await self.bus.request("replica.whoami", {"from": self.replica}, timeout=5.0)
"""

WHOAMI = """
import json
import os
from microcore import Plugin


class WhoamiPlugin(Plugin):
    \"\"\"Answers replica.whoami: deployed on replica B only.\"\"\"

    def __init__(self, event_bus, config):
        self.bus, self.config = event_bus, config

    async def on_boot(self):
        await self.bus.subscribe("replica.whoami", self.answer)

    async def answer(self, event):
        return {
            "replica": self.config.get("REPLICA_NAME"),
            "pid": os.getpid(),
            "asked_by": event.payload["from"],
        }
"""


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings both replicas share: a fresh schema, stream and key prefix, removed after."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    require_service("NATS", NATS_URL, 4222)
    require_service("Redis", REDIS_URL, 6379)
    tag = uuid.uuid4().hex[:12]
    schema, stream, prefix = f"replicas_{tag}", f"replicas_{tag}", f"replicas-{tag}"
    anyio.run(_create_schema, schema)
    try:
        yield {
            "DATABASE_URL": with_query(POSTGRES_URL, search_path=schema),
            "EVENT_BUS_URL": NATS_URL,
            "EVENT_BUS_STREAM": stream,
            "STATE_URL": REDIS_URL,
            "STATE_PREFIX": prefix,
            "MICROCORE_ENV": "development",
            "LOG_FORMAT": "json",
        }
    finally:
        anyio.run(_clean_up, schema, stream, prefix)


async def _create_schema(schema: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
    finally:
        await admin.close()


async def _clean_up(schema: str, stream: str, prefix: str) -> None:
    import asyncpg
    import redis.asyncio as redis

    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await admin.close()
    await delete_stream(stream)
    store = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in store.scan_iter(match=f"{prefix}:*")]
        if keys:
            await store.delete(*keys)
    finally:
        await store.aclose()


def project(root: Path, *, responder: bool) -> Path:
    """A copy of this repository's app with the probe domain (and the responder on B)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    root.mkdir(parents=True)
    shutil.copy(REPO / "app.py", root / "app.py")
    shutil.copytree(REPO / "domains", root / "domains", ignore=skip)
    shutil.copytree(REPO / "tools", root / "tools", ignore=skip)
    plugins = root / "domains" / "probe" / "plugins"
    plugins.mkdir(parents=True)
    (root / "domains" / "probe" / "__init__.py").write_text("")
    (plugins / "__init__.py").write_text("")
    (plugins / "probe_plugin.py").write_text(textwrap.dedent(PROBE))
    if responder:
        (plugins / "whoami_plugin.py").write_text(textwrap.dedent(WHOAMI))
    return root


class Replica:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log


@contextmanager
def replica(root: Path, env: Mapping[str, str], log: Path) -> Iterator[Replica]:
    """``uvicorn app:app`` in ``root`` on a free port, logging to ``log``; stopped on exit."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=root,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(f"{url}/system/health", process)
            yield Replica(url, process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung server is a bug
                process.kill()
                process.wait(timeout=5)


@contextmanager
def fleet(
    tmp_path: Path, env: Mapping[str, str], *, b_env: Mapping[str, str] | None = None
) -> Iterator[tuple[Replica, Replica]]:
    """Replica A (no responder), then replica B (with it, and ``b_env``), both serving."""
    a_root = project(tmp_path / "a", responder=False)
    b_root = project(tmp_path / "b", responder=True)
    with (
        replica(a_root, {**env, "REPLICA_NAME": "A"}, tmp_path / "a.log") as a,
        replica(b_root, {**env, **(b_env or {}), "REPLICA_NAME": "B"}, tmp_path / "b.log") as b,
    ):
        yield a, b


def eventually(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)  # the polling interval of a bounded wait (other processes work)


def test_replicas_handle_each_event_once_per_plugin_and_answer_each_others_requests(
    tmp_path: Path, shared: dict[str, str]
) -> None:
    """Products made through both replicas: each product.created is handled once per plugin."""
    names = [f"pen-{i}" for i in range(24)]
    with fleet(tmp_path, shared) as (a, b), httpx.Client(timeout=10) as http:
        for index, name in enumerate(names):
            target = (a, b)[index % 2]
            created = http.post(f"{target.url}/products", json={"name": name, "price": 1.5})
            assert created.status_code == 201, created.text

        def probed() -> dict[str, Any] | None:
            seen = http.get(f"{a.url}/probe/handled").json()
            return seen if len(seen) >= len(names) else None

        handled = eventually(probed, what="every product.created handled by the probe")
        eventually(
            lambda: http.get(f"{b.url}/products/stats").json()["created"] >= len(names),
            what="ProductStatsPlugin counting every product",
        )
        time.sleep(0.3)  # an observation window: a duplicate delivery would show up here
        stats = http.get(f"{a.url}/products/stats").json()
        handled = http.get(f"{b.url}/probe/handled").json()
        listed = http.get(f"{a.url}/products").json()

        answer = http.get(f"{a.url}/probe/ask")
        status_a = http.get(f"{a.url}/system/status").json()

    assert stats == {"created": len(names)}  # ProductStatsPlugin: once per product
    assert sorted(handled) == sorted(names)
    assert {entry["count"] for entry in handled.values()} == {1}  # the probe: once each
    assert {entry["by"] for entry in handled.values()} == {"A", "B"}  # the queue group shares
    assert sorted(p["name"] for p in listed) == sorted(names)  # one PostgreSQL for both
    assert answer.status_code == 200, answer.text
    assert answer.json()["replica"] == "B" and answer.json()["asked_by"] == "A"
    assert "probe.WhoamiPlugin" not in status_a["plugins"]


def test_replicas_killed_replica_loses_no_acknowledged_event(
    tmp_path: Path, shared: dict[str, str]
) -> None:
    """Replica B is killed (SIGKILL) mid-stream: every acknowledged product is still handled."""
    env = {**shared, "EVENT_BUS_ACK_WAIT": "1"}
    acknowledged: list[str] = []
    # B handles slowly, so it holds a backlog of unacked events when it dies
    with (
        fleet(tmp_path, env, b_env={"PROBE_DELAY": "0.3"}) as (a, b),
        httpx.Client(timeout=10) as http,
    ):
        for index in range(60):
            name = f"cup-{index}"
            target = b if index % 2 and b.process.poll() is None else a
            try:
                created = http.post(f"{target.url}/products", json={"name": name, "price": 2.0})
            except httpx.TransportError:
                continue  # not acknowledged: the client saw no 201
            if created.status_code == 201:
                acknowledged.append(name)
            if index == 30:
                eventually(
                    lambda: (
                        "B" in {e["by"] for e in http.get(f"{a.url}/probe/handled").json().values()}
                    ),
                    what="replica B handling events",
                )
                b.process.kill()  # no drain, no nak: its unacked events are redelivered
                b.process.wait(timeout=10)

        def all_handled() -> bool:
            seen = http.get(f"{a.url}/probe/handled").json()
            return set(acknowledged) <= set(seen)

        eventually(all_handled, timeout=30, what="every acknowledged product handled")
        handled = http.get(f"{a.url}/probe/handled").json()
        started = http.get(f"{a.url}/probe/handled", params={"started": 1}).json()
    assert len(acknowledged) >= 45
    assert set(acknowledged) <= set(handled)
    assert all(handled[name]["count"] >= 1 for name in acknowledged)
    cut_short = [n for n in handled if f"B:{n}" in started and handled[n]["by"] == "A"]
    assert cut_short  # B died in the middle of a handler; JetStream gave that event to A


def _follow(url: str, names: list[str], opened: threading.Event) -> None:
    """Read the live feed at ``url`` until the server ends it, noting product names."""
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url) as response,
    ):
        opened.set()
        for line in response.iter_lines():
            if line.startswith("data: "):
                names.append(json.loads(line.removeprefix("data: ")).get("name", ""))


def test_replicas_live_feed_reaches_the_clients_of_every_replica(
    tmp_path: Path, shared: dict[str, str]
) -> None:
    """GET /products/live is fed by a broadcast subscription: a product made through either
    replica reaches the stream clients of both, in order."""
    seen: dict[str, list[str]] = {"A": [], "B": []}
    with fleet(tmp_path, shared) as (a, b), httpx.Client(timeout=10) as http:
        for name, target in (("A", a), ("B", b)):
            opened = threading.Event()
            threading.Thread(
                target=_follow,
                args=(f"{target.url}/products/live", seen[name], opened),
                daemon=True,
            ).start()
            assert opened.wait(10)

        def warm() -> bool:  # until both clients are registered with their replica's feed
            marker = f"warm-{uuid.uuid4().hex[:6]}"
            http.post(f"{a.url}/products", json={"name": marker, "price": 1.0})
            time.sleep(0.2)  # the polling interval: the marker travels through NATS
            return marker in seen["A"] and marker in seen["B"]

        eventually(warm, what="both live feeds receiving")
        names = [f"live-{i}" for i in range(6)]
        for index, name in enumerate(names):
            target = (a, b)[index % 2]
            assert http.post(f"{target.url}/products", json={"name": name, "price": 1.0}).is_success
        for replica_name in ("A", "B"):
            eventually(
                lambda r=replica_name: [n for n in seen[r] if n.startswith("live-")] == names,  # type: ignore[misc]
                what=f"replica {replica_name}'s live feed showing every product in order",
            )
