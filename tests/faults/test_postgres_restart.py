"""PostgreSQL restarts under POST load: what each client was told is what happened.

The example app runs on a PostgreSQL of the test's own (``PrivatePostgres``), which
is stopped (a clean ``fast`` shutdown, then an ``immediate`` one: a crash) and
started again on the same port and data while three clients keep creating
products. Afterwards:

* every ``201`` has its row, with the id the client was given;
* every other answer is a 5xx in the error shape (no stack trace, no SQL), and
  the rows it may have left (a commit whose answer was lost) are counted;
* the app recovered without a restart (``201`` again after each outage);
* each committed row's ``product.created`` was handled exactly once (the
  transactional outbox: a row and its event commit together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import structlog

from tests.support import PrivatePostgres, eventually, serve

REPO = Path(__file__).resolve().parents[2]
RESTARTS = 4
PER_ROUND = 20  # products created between two restarts

_log = structlog.get_logger("tests.faults")


class Outcomes:
    """What the clients were told, per product name."""

    def __init__(self) -> None:
        self.created: dict[str, int] = {}  # name -> id answered with 201
        self.failed: dict[str, tuple[int, Any]] = {}  # name -> (status, body); 0: no answer

    def more_created(self, count: int) -> Any:
        mark = len(self.created) + count
        return lambda: len(self.created) >= mark

    def failed_since(self, mark: int) -> Any:
        return lambda: len(self.failed) > mark


async def clients(base: str, outcomes: Outcomes, stop: anyio.Event) -> None:
    async def client(worker: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            n = 0
            while not stop.is_set():
                name, n = f"w{worker}-{n}", n + 1
                try:
                    answer = await http.post("/products", json={"name": name, "price": 1})
                except httpx.TransportError as exc:
                    outcomes.failed[name] = (0, repr(exc))
                    continue
                if answer.status_code == 201:
                    outcomes.created[name] = answer.json()["id"]
                else:
                    outcomes.failed[name] = (answer.status_code, answer.json())
                await anyio.sleep(0.01)  # pacing: about 100 requests/s per client

    async with anyio.create_task_group() as tg:
        for worker in range(3):
            tg.start_soon(client, worker)


def assert_error_shape(status: int, body: Any) -> None:
    assert 500 <= status < 600, (status, body)
    assert body["success"] is False
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    text = str(body)
    for leak in ("Traceback", "INSERT INTO", "asyncpg", 'File "'):
        assert leak not in text, f"{leak!r} leaked into {body}"


@pytest.mark.timeout(240)
async def test_postgres_restarts_client_answers_match_the_database(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """Four PostgreSQL restarts (clean and crash) under POST load: every 201 has its row,
    every failure is a 5xx in the error shape, the app recovers by itself, and each
    committed row's event is handled once."""
    env = {
        "DATABASE_URL": private_postgres.url,
        "DATABASE_BUSY_TIMEOUT": "2",
        "EVENT_BUS_OUTBOX_LEASE": "2",  # a commit whose answer was lost is relayed soon
        "MICROCORE_ENV": "development",
    }
    outcomes = Outcomes()
    with serve(REPO, env, log=tmp_path / "server.log") as base:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(clients, base, outcomes, stop)
            for round_ in range(RESTARTS):
                await eventually(outcomes.more_created(PER_ROUND), timeout=60)
                mark = len(outcomes.failed)
                mode = "immediate" if round_ % 2 else "fast"
                await anyio.to_thread.run_sync(private_postgres.stop, mode)
                await eventually(outcomes.failed_since(mark), timeout=30)  # clients saw it
                await anyio.to_thread.run_sync(private_postgres.start)
            await eventually(outcomes.more_created(PER_ROUND), timeout=60)  # recovered
            stop.set()

        conn = await asyncpg.connect(private_postgres.url)
        try:
            rows = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM products")}
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def counted() -> bool:
                stats = (await http.get("/products/stats")).json()
                return bool(stats["created"] == len(rows))

            await eventually(counted, timeout=30)  # every committed row's event, once

    lost = {n: i for n, i in outcomes.created.items() if rows.get(n) != i}
    assert not lost, f"{len(lost)} products answered 201 have no row (or another id): {lost}"
    for status, body in outcomes.failed.values():
        if status:  # 0: the connection itself failed, nothing was answered
            assert_error_shape(status, body)
    unanswered = set(rows) - set(outcomes.created)
    assert unanswered <= set(outcomes.failed), "rows nobody asked for"
    _log.info(  # the figures for the closing note (pytest -s shows them)
        "postgres_restart_figures",
        restarts=RESTARTS,
        created=len(outcomes.created),
        failed=len(outcomes.failed),
        failed_but_committed=len(unanswered),
        statuses=sorted({s for s, _ in outcomes.failed.values()}),
    )
