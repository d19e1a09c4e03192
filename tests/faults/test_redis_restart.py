"""Redis restarts under load: what each client was told is what happened.

The example app keeps its product count in the ``state`` tool on a Redis of the
test's own (``PrivateRedis``, data kept across restarts), which is stopped and
started again three times while clients create products and read
``GET /products/stats``. Afterwards:

* every stats answer was a ``200`` with a count that never went backwards, or a
  5xx in the error shape (no stack trace) while Redis was down;
* ``/system/health`` named the state store while it was down, and was ``200``
  again after, without an app restart;
* every ``product.created`` is accounted for: handled (counted) or reported as
  failed (``microcore_event_handler_failures_total``, a dead letter), and the count
  lies between the handled events and the handled plus the failed ones (an
  increment whose reply was lost);
* after the last restart, counting is exact again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog

from tests.faults.test_postgres_restart import assert_error_shape
from tests.support import PrivateRedis, eventually, serve

REPO = Path(__file__).resolve().parents[2]
RESTARTS = 3
STATS = 'name="product.created",subscriber="products.ProductStatsPlugin"'

_log = structlog.get_logger("tests.faults")


def grows(count: Callable[[], int], by: int) -> Callable[[], bool]:
    """True once ``count()`` grew by ``by`` from now."""
    mark = count() + by
    return lambda: count() >= mark


def counter(metrics: str, family: str) -> int:
    found = re.search(rf"^{family}\{{{re.escape(STATS)}\}} (\d+)", metrics, re.MULTILINE)
    return int(found.group(1)) if found else 0


@pytest.mark.timeout(240)
async def test_redis_restarts_client_answers_match_what_happened(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Three Redis restarts under load: stats answers are honest (200 never backwards, or a
    5xx in the error shape), health names the state store while it is down, every event is
    counted or reported failed, and the app recovers by itself."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "STATE_URL": private_redis.url,
        "SYSTEM_PROBE_CACHE": "0.1",
        "MICROCORE_ENV": "development",
    }
    created: list[int] = []
    answers: list[tuple[int, Any]] = []  # GET /products/stats: (status, body)
    health_down: list[Any] = []
    with serve(REPO, env, log=tmp_path / "server.log") as base:
        stop = anyio.Event()

        async def writer(http: httpx.AsyncClient) -> None:
            n = 0
            while not stop.is_set():
                answer = await http.post("/products", json={"name": f"p{n}", "price": 1})
                assert answer.status_code == 201, answer.text  # creating needs no Redis
                created.append(answer.json()["id"])
                n += 1
                await anyio.sleep(0.01)  # pacing

        async def reader(http: httpx.AsyncClient) -> None:
            while not stop.is_set():
                answer = await http.get("/products/stats")
                answers.append((answer.status_code, answer.json()))
                await anyio.sleep(0.01)  # pacing

        def served_stats() -> int:
            return len([s for s, _ in answers if s == 200])

        def failed_stats() -> int:
            return len([s for s, _ in answers if s != 200])

        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer, http)
                tg.start_soon(reader, http)
                for _ in range(RESTARTS):
                    await eventually(grows(served_stats, 20), timeout=60)
                    refused = grows(failed_stats, 1)
                    await anyio.to_thread.run_sync(private_redis.stop)
                    await eventually(refused, timeout=30)

                    async def unready() -> bool:
                        health = await http.get("/system/health")
                        if health.status_code == 503:
                            health_down.append(health.json())
                        return health.status_code == 503

                    await eventually(unready, timeout=10)
                    await anyio.to_thread.run_sync(private_redis.start)
                await eventually(grows(served_stats, 20), timeout=60)  # recovered
                stop.set()

            assert (await http.get("/system/health")).status_code == 200
            last = (await http.get("/products/stats")).json()["created"]
            for n in range(5):  # exact again after the last restart
                posted = await http.post("/products", json={"name": f"after{n}", "price": 1})
                assert posted.status_code == 201
            total = len(created) + 5

            async def accounted() -> bool:
                metrics = (await http.get("/system/metrics")).text
                done = counter(metrics, "microcore_events_delivered_total")
                failed = counter(metrics, "microcore_event_handler_failures_total")
                return done + failed == total

            await eventually(accounted, timeout=30)
            metrics = (await http.get("/system/metrics")).text
            delivered = counter(metrics, "microcore_events_delivered_total")
            failed = counter(metrics, "microcore_event_handler_failures_total")
            count = (await http.get("/products/stats")).json()["created"]

    assert last + 5 <= count  # the five after the last restart were counted
    assert delivered <= count <= delivered + failed
    shown = [body["created"] for status, body in answers if status == 200]
    assert shown == sorted(shown), "a stats answer went backwards"
    for status, body in answers:
        if status != 200:
            assert_error_shape(status, body)
    assert all("state" in h["error"]["message"] for h in health_down), health_down
    _log.info(  # the figures for the closing note (pytest -s shows them)
        "redis_restart_figures",
        restarts=RESTARTS,
        created=total,
        delivered=delivered,
        failed_reported=failed,
        stats_ok=len(shown),
        stats_5xx=len(answers) - len(shown),
        statuses=sorted({s for s, _ in answers}),
    )
