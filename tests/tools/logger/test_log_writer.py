"""The log writer and the access logger: lines rendered cheaply, written off the event loop,
access lines dropped (and counted) under overload, error lines never, nothing lost at exit."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from microcore._core import logs
from microcore.testing import start_app
from microcore.tooling import AccessLogger, dropped_log_lines
from tests.conftest import ProjectFactory

FIELDS = {
    "method": "GET",
    "path": "/ping",
    "status": 200,
    "duration_ms": 0.25,
    "request_id": "req-1",
    "plugin": "bench.PingPlugin",
}


class LogFile:
    """A real file (a file descriptor: the threaded writer) to point stderr at."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.stream = path.open("w")
        self._monkeypatch = monkeypatch

    def configure(self, **options: Any) -> None:
        """stderr to the file (pytest restores its own stderr between phases), then logging."""
        self._monkeypatch.setattr(sys, "stderr", self.stream)
        logs.configure_logging(**options)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LogFile]:
    """A log file for the test; logging reset and the file closed after."""
    log = LogFile(tmp_path / "app.log", monkeypatch)
    try:
        yield log
    finally:
        logs.reset()
        log.stream.close()


def test_access_logger_json_line_has_the_fields(log_file: LogFile) -> None:
    """An access line is one JSON object: the fields, the bound ones, event, level, timestamp,
    and the contextvars bound for the request."""
    log_file.configure(fmt="json")
    access = AccessLogger(tool="http")
    structlog.contextvars.bind_contextvars(tenant="t-1")
    try:
        access.info("http_request", **FIELDS)
    finally:
        structlog.contextvars.clear_contextvars()
    assert logs.flush()
    (line,) = log_file.lines()
    timestamp = line.pop("timestamp")
    assert line == {
        "tool": "http",
        **FIELDS,
        "event": "http_request",
        "tenant": "t-1",
        "level": "info",
    }
    assert timestamp.endswith("Z")
    assert len(timestamp) == len("2026-01-01T00:00:00.000000Z")


def test_prepared_access_line_is_the_info_line(log_file: LogFile) -> None:
    """A prepared line (fields by position) writes what ``info`` writes: the same keys and
    values, a contextvar bound for the request merged in, the line's own fields first."""
    log_file.configure(fmt="json")
    access = AccessLogger(tool="http")
    line = access.prepare("http_request", tuple(FIELDS))
    line(*FIELDS.values())
    access.info("http_request", **FIELDS)
    structlog.contextvars.bind_contextvars(tenant="t-1", request_id="bound")
    try:
        line(*FIELDS.values())
    finally:
        structlog.contextvars.clear_contextvars()
    line(*FIELDS.values())  # unbound again: the prepared shape
    assert logs.flush()
    lines = log_file.lines()
    for entry in lines:
        timestamp = entry.pop("timestamp")
        assert timestamp.endswith("Z")
        assert len(timestamp) == len("2026-01-01T00:00:00.000000Z")
    expected = {"tool": "http", **FIELDS, "event": "http_request", "level": "info"}
    assert lines == [expected, expected, {**expected, "tenant": "t-1"}, expected]


def test_prepared_access_line_follows_the_configuration(log_file: LogFile) -> None:
    """capture_logs sees prepared lines; with the console format they are structlog's console
    lines; a value msgspec refuses is logged the way ``info`` logs it."""
    log_file.configure(fmt="json")
    line = AccessLogger(tool="http").prepare("http_request", ("n",))
    with structlog.testing.capture_logs() as captured:
        line(1)
    assert captured == [{"tool": "http", "n": 1, "event": "http_request", "log_level": "info"}]

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    line(Opaque())
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    line(cyclic)  # msgspec refuses it: the general path writes the line naming the problem
    assert logs.flush()
    opaque, cycle = log_file.lines()
    assert opaque["n"] == "<opaque>"
    assert (cycle["event"], "not encodable" in cycle["log_error"]) == ("http_request", True)
    log_file.configure(fmt="console")
    AccessLogger(tool="http").prepare("http_request", tuple(FIELDS))(*FIELDS.values())
    assert logs.flush()
    console = log_file.path.read_text().splitlines()[-1]
    assert "http_request" in console
    assert "plugin=bench.PingPlugin" in console


def test_a_burst_of_prepared_lines_wakes_the_writer(log_file: LogFile) -> None:
    """A quarter of the queue's capacity in access lines is written without waiting for
    the writer's interval (nor for a flush)."""
    log_file.configure(fmt="json")
    (writer,) = logs._writer
    writer._interval = 3600  # read per wait: after the next wake-up only a burst wakes it
    writer.write(b'{"event": "start"}\n', urgent=True)
    wait(lambda: "start" in log_file.path.read_text())
    line = AccessLogger(tool="http").prepare("http_request", ("n",))
    burst = writer._hurry
    for n in range(burst):
        line(n)
    wait(lambda: log_file.path.read_text().count("\n") >= burst)
    assert log_file.lines()[-1]["n"] == burst - 1


def test_access_logger_console_and_level_use_structlog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the console format the access line is structlog's console line; a level above
    INFO writes none."""
    try:
        logs.configure_logging(fmt="console")
        AccessLogger(tool="http").info("http_request", **FIELDS)
        out = capsys.readouterr().err
        assert "http_request" in out
        assert "bench.PingPlugin" in out
        logs.configure_logging(fmt="json", level="WARNING")
        AccessLogger(tool="http").info("http_request", **FIELDS)
        assert capsys.readouterr().err == ""
    finally:
        logs.reset()


def test_access_logger_lines_reach_capture_logs(log_file: LogFile) -> None:
    """structlog.testing.capture_logs sees access lines (the configured chain is honoured)."""
    log_file.configure(fmt="json")
    access = AccessLogger(tool="http")
    with structlog.testing.capture_logs() as captured:
        access.info("http_request", **FIELDS)
    assert captured == [{"tool": "http", **FIELDS, "event": "http_request", "log_level": "info"}]


def test_log_lines_keep_their_order_across_levels(log_file: LogFile) -> None:
    """Access lines and error lines come out in the order they were logged."""
    log_file.configure(fmt="json")
    access = AccessLogger(tool="http")
    log = structlog.get_logger("t")
    access.info("http_request", n=1)
    log.error("request_failed", n=2)
    access.info("http_request", n=3)
    log.warning("slow", n=4)
    log.info("done", n=5)
    assert logs.flush()
    assert [(line["event"], line["n"]) for line in log_file.lines()] == [
        ("http_request", 1),
        ("request_failed", 2),
        ("http_request", 3),
        ("slow", 4),
        ("done", 5),
    ]


def test_json_renderer_falls_back_for_what_msgspec_refuses(log_file: LogFile) -> None:
    """Values msgspec cannot encode are logged by ``__structlog__`` or ``repr`` (a placeholder
    when repr raises); a line that cannot be encoded at all (a cycle) still gives one JSON
    line naming the problem."""

    class Custom:
        def __structlog__(self) -> str:
            return "custom!"

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    log_file.configure(fmt="json")
    log = structlog.get_logger("t")
    log.info("values", custom=Custom(), opaque=Opaque(), broken=Broken())
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    log.info("cycle", data=cyclic)
    AccessLogger(tool="http").info("http_request", data=cyclic)  # its own fast path too
    assert logs.flush()
    first, second, third = log_file.lines()
    assert (third["event"], "not encodable" in third["log_error"]) == ("http_request", True)
    assert (first["custom"], first["opaque"]) == ("custom!", "<opaque>")
    assert first["broken"].endswith("Broken: repr failed>")
    assert (second["event"], second["level"]) == ("cycle", "info")
    assert "not encodable" in second["log_error"]


def test_writer_drops_access_lines_never_errors_under_a_blocked_stream() -> None:
    """With the stream blocked (a full pipe nobody reads) writing returns at once; access lines
    over the capacity are dropped and counted, error lines kept; once the stream drains,
    every kept line comes out, in order."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    filler = b"x" * 65536
    with pytest.raises(BlockingIOError):
        while True:
            os.write(write_end, filler)  # fill the pipe: the writer's next write blocks
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w")
    writer = logs.LineWriter(stream, capacity=3, interval=3600)
    drained: list[bytes] = []
    reader = threading.Thread(target=lambda: drained.append(_read_all(read_end)))
    try:
        writer.write(b"error 0\n", urgent=True)  # the writer takes it and blocks in os.write
        wait(lambda: not writer._lines)
        for n in range(5):
            writer.write(f"access {n}\n".encode(), droppable=True)
        writer.write(b"error 1\n", urgent=True)  # over capacity, kept
        writer.write(b"access 5\n", droppable=True)
        assert writer.dropped == 3
        reader.start()
        assert writer.close()
    finally:
        stream.close()
        reader.join(10)
    text = drained[0].replace(filler, b"").decode()
    assert text.splitlines() == ["error 0", "access 0", "access 1", "access 2", "error 1"]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def wait(check: Any, timeout: float = 5.0) -> None:
    """Wait (bounded) for ``check()`` from plain threads' work."""
    done = threading.Event()

    def poll() -> None:
        while not check():
            if done.wait(0.001):
                return
        done.set()

    thread = threading.Thread(target=poll)
    thread.start()
    thread.join(timeout)
    finished = done.is_set()
    done.set()
    assert finished, "condition not met in time"


def test_writer_counts_lines_a_failing_stream_lost(tmp_path: Path) -> None:
    """A stream that fails (closed descriptor, closed text stream) loses lines: counted, never
    raised; flush and close report success; a line after close is written at once."""
    path = tmp_path / "gone.log"
    stream = path.open("w")
    writer = logs.LineWriter(stream, interval=3600)
    os.close(stream.fileno())
    writer.write(b"lost\n", urgent=True)
    assert writer.flush()
    assert writer.dropped == 1
    assert writer.close()
    text = io.StringIO()
    text.close()
    in_memory = logs.LineWriter(text)
    in_memory.write(b"nowhere\n")
    in_memory.write(b"access, nowhere\n", droppable=True)
    assert in_memory.dropped == 2
    assert in_memory.flush()
    assert in_memory.close()
    with pytest.raises(OSError):
        stream.close()


def test_writer_times_out_when_the_stream_stays_blocked() -> None:
    """flush() and close() are bounded: a stream that never drains makes them return False."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with pytest.raises(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 65536)
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w")
    writer = logs.LineWriter(stream, interval=3600)
    try:
        writer.write(b"stuck\n", urgent=True)
        assert writer.flush(timeout=0.05) is False
        assert writer.close(timeout=0.05) is False
    finally:
        drained = threading.Thread(target=_read_all, args=(read_end,))
        drained.start()
        assert writer.close()
        stream.close()
        drained.join(10)


def test_writer_after_close_writes_at_once(tmp_path: Path) -> None:
    """A line logged after the writer closed (a late shutdown line) is still written."""
    path = tmp_path / "late.log"
    with path.open("w") as stream:
        writer = logs.LineWriter(stream)
        assert writer.close()
        writer.write(b"late\n")
        assert writer.close()
    assert path.read_text() == "late\n"


def test_dropped_log_lines_survive_a_reconfiguration(log_file: LogFile) -> None:
    """The process-wide drop count keeps the drops of writers already replaced."""
    log_file.configure(fmt="json")
    before = dropped_log_lines()
    (writer,) = logs._writer
    writer._full += 2
    assert dropped_log_lines() == before + 2
    log_file.configure(fmt="json", level="DEBUG")
    assert dropped_log_lines() == before + 2


async def test_app_shutdown_writes_every_line(
    log_file: LogFile, make_project: ProjectFactory
) -> None:
    """Stopping the app flushes the writer: the access lines and ``shutdown_complete`` are in
    the log the moment ``stop()`` returns; /system/metrics reports the drop count."""
    import httpx

    root = make_project({}, tools=["config", "logger", "http", "event_bus", "system"])
    log_file.configure(fmt="json")  # the kernel's own configuration keeps this writer
    settings = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "DATABASE_URL": "sqlite://"}
    running = await start_app(root, settings=settings)
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(3):
                await client.get("/system/health")
            metrics = (await client.get("/system/metrics")).text
    finally:
        await running.stop()
    assert f"microcore_log_lines_dropped_total {dropped_log_lines()}" in metrics
    events = [line["event"] for line in log_file.lines()]
    assert events.count("http_request") == 4
    assert events[-1] == "shutdown_complete"


def test_merge_matches_structlogs_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain's contextvars merge gives what structlog's merge_contextvars gives (bound
    values in, unbound ones out, the line's own fields first), also on its fallback."""
    structlog.contextvars.bind_contextvars(request_id="r-1", user="ada")
    structlog.contextvars.unbind_contextvars("user")
    try:
        theirs = structlog.contextvars.merge_contextvars(None, "info", {"a": 1})
        assert logs._merge(None, "info", {"a": 1}) == theirs == {"a": 1, "request_id": "r-1"}
        assert logs._merge(None, "info", {"request_id": "own"}) == {"request_id": "own"}
        monkeypatch.setattr(logs, "_BOUND", None)
        assert logs._merge(None, "info", {"x": 2}) == {"x": 2, "request_id": "r-1"}
    finally:
        structlog.contextvars.clear_contextvars()
