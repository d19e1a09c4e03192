"""What the http tool reports after each request: the access log line and tool observers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.tools.system.conftest import Boot

LOGGING = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}


def log_lines(capsys: Any, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == event]


async def test_access_log_writes_one_line_per_request(
    capsys: pytest.CaptureFixture[str], boot: Boot
) -> None:
    """Each request logs method, path, status, duration_ms, request_id and the owning plugin."""
    system = await boot(settings=LOGGING)
    try:
        capsys.readouterr()
        response = await system.client.get("/orders/5", headers={"x-request-id": "req-42"})
        await system.client.get("/missing")
        lines = log_lines(capsys, "http_request")
        assert len(lines) == 2
        first, second = lines
        assert first["method"] == "GET"
        assert first["path"] == "/orders/5"
        assert first["status"] == 200
        assert first["request_id"] == "req-42" == response.headers["x-request-id"]
        assert first["plugin"] == "shop.OrderPlugin"
        assert first["level"] == "info"
        assert isinstance(first["duration_ms"], float)
        assert first["duration_ms"] >= 0
        assert (second["path"], second["status"], second["plugin"]) == ("/missing", 404, None)
    finally:
        await system.running.stop()  # while capsys still captures the shutdown lines


async def test_access_log_can_be_switched_off(
    capsys: pytest.CaptureFixture[str], boot: Boot
) -> None:
    """HTTP_ACCESS_LOG=0 writes no access lines (metrics still count the requests)."""
    system = await boot(settings={**LOGGING, "HTTP_ACCESS_LOG": "0"})
    try:
        capsys.readouterr()
        await system.client.get("/orders/5")
        assert log_lines(capsys, "http_request") == []
        metrics = (await system.client.get("/system/metrics")).text
        assert 'route="/orders/{order_id:int}",status="200"} 1' in metrics
    finally:
        await system.running.stop()  # while capsys still captures the shutdown lines


async def test_handler_failure_logs_error_id_and_traceback(
    capsys: pytest.CaptureFixture[str], boot: Boot
) -> None:
    """A handler that raises logs its error id (the one in the 500 body) with the traceback."""
    system = await boot(settings=LOGGING)
    try:
        capsys.readouterr()
        response = await system.client.get("/boom")
        error_id = response.json()["error"]["id"]
        (failure,) = log_lines(capsys, "request_failed")
        assert failure["error_id"] == error_id
        assert "RuntimeError: kaboom" in failure["exception"]
        assert failure["owner"] == "shop.OrderPlugin"
    finally:
        await system.running.stop()  # while capsys still captures the shutdown lines


async def test_observer_sees_route_template_status_and_owner(boot: Boot) -> None:
    """http.observe() callbacks get each answered request; remove() stops them."""
    system = await boot()
    http = system.http
    seen: list[Any] = []
    remove = http.observe(seen.append)
    await system.client.post("/orders", json={"item": "pen"}, headers={"x-request-id": "r-1"})
    await system.client.get("/orders/3")
    remove()
    await system.client.get("/orders/4")
    assert [(e.method, e.route, e.status, e.owner) for e in seen] == [
        ("POST", "/orders", 201, "shop.OrderPlugin"),
        ("GET", "/orders/{order_id:int}", 200, "shop.OrderPlugin"),
    ]
    assert seen[0].request_id == "r-1"
    assert seen[1].path == "/orders/3"
    assert seen[1].duration > 0


async def test_observer_failure_is_logged_and_the_response_stands(
    capsys: pytest.CaptureFixture[str], boot: Boot
) -> None:
    """An observer that raises is logged; the client still gets its answer."""
    system = await boot(settings={**LOGGING, "HTTP_ACCESS_LOG": "0"})
    try:
        http = system.http

        def broken(exchange: Any) -> None:
            raise ValueError("observer bug")

        http.observe(broken)
        capsys.readouterr()
        assert (await system.client.get("/orders/1")).status_code == 200
        (line,) = log_lines(capsys, "http_observer_failed")
        assert "observer bug" in line["exception"]
    finally:
        await system.running.stop()  # while capsys still captures the shutdown lines
