"""Small kernel modules: logging configuration, causal context, injection helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import structlog

from microcore._core import logs as _logging
from microcore._core.injection import Dependencies, dependencies_of, require_coroutine_function
from microcore.tooling import (
    ConfigurationError,
    HookError,
    causation,
    current_correlation_id,
    current_event_id,
    new_id,
)


def test_configure_logging_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """LOG_FORMAT=json writes one JSON object per line with the event and fields."""
    _logging.configure_logging(fmt="json")
    _logging.configure_logging(fmt="json")  # idempotent
    structlog.get_logger("t").info("hello_world", answer=42)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["event"], line["answer"], line["level"]) == ("hello_world", 42, "info")


def test_configure_logging_console_and_auto(capsys: pytest.CaptureFixture[str]) -> None:
    """console renders readable lines; no format picks one by whether stderr is a terminal."""
    _logging.configure_logging(fmt="console", level="debug")
    structlog.get_logger("t").debug("dbg_line")
    assert "dbg_line" in capsys.readouterr().err
    _logging.configure_logging(fmt=None)
    structlog.get_logger("t").info("auto_line")
    assert "auto_line" in capsys.readouterr().err


def test_configure_logging_rejects_unknown_format() -> None:
    """An unknown LOG_FORMAT names the allowed values."""
    with pytest.raises(ConfigurationError, match="LOG_FORMAT must be 'console' or 'json'"):
        _logging.configure_logging(fmt="xml")


def test_causation_sets_and_restores_context() -> None:
    """causation() scopes the correlation and event ids to a block."""
    assert current_correlation_id() is None
    with causation("corr", "evt"):
        assert (current_correlation_id(), current_event_id()) == ("corr", "evt")
    assert (current_correlation_id(), current_event_id()) == (None, None)
    assert len(new_id()) == 32


def test_new_ids_never_repeat_across_a_fork() -> None:
    """Ids are 32 hex characters, unique in a process and between a parent and the children
    it forks (uvicorn and Granian workers): a forked child never replays its parent's ids."""
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, "".join(new_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    theirs = {child[i : i + 32] for i in range(0, len(child), 32)}
    ours = {new_id() for _ in range(8)}
    assert len(theirs) == 8 and not theirs & ours


def test_dependencies_of_reads_required_and_optional() -> None:
    """Parameters without defaults are required, with defaults optional; no __init__ needs none."""

    class A:
        def __init__(self, http: object, db: object = None) -> None:
            pass

    class B(A):
        pass

    class C:
        pass

    assert dependencies_of(A, what="a") == Dependencies(("http",), ("db",))
    assert dependencies_of(B, what="b").names == ("http", "db")
    assert dependencies_of(C, what="c") == Dependencies((), ())


def test_require_coroutine_function_accepts_async_callables() -> None:
    """Coroutine functions, bound async methods and async callable objects pass."""

    async def fn() -> None: ...

    class Obj:
        async def method(self) -> None: ...

        async def __call__(self) -> None: ...

    require_coroutine_function(fn, what="x")
    require_coroutine_function(Obj().method, what="x")
    require_coroutine_function(Obj(), what="x")


def test_require_coroutine_function_refuses_sync_and_non_callables() -> None:
    """A sync function gets a fix hint; a non-callable says what it got."""

    def handler() -> None: ...

    with pytest.raises(HookError, match="declare it 'async def handler"):
        require_coroutine_function(handler, what="route GET /")
    with pytest.raises(HookError, match="must be an async function, got int"):
        require_coroutine_function(3, what="x")


def test_error_public_message_defaults_to_the_message() -> None:
    """An HTTP client reads the whole message unless an error class narrows it."""
    from microcore import MicroCoreError, RequestTimeout

    assert MicroCoreError("nope").public_message == "nope"
    assert (RequestTimeout.code, RequestTimeout.http_status) == ("timeout", 504)


def test_error_info_picks_the_most_useful_frame(tmp_path: Path) -> None:
    """Without a frame in the preferred file or the project, the innermost frame is used."""
    from microcore._core.discovery import error_info, file_digest
    from microcore._core.status import relative

    try:
        raise ValueError("deep")
    except ValueError as exc:
        caught = exc
    info = error_info(caught, prefer=tmp_path / "other.py", root=tmp_path)
    assert (info.message, info.file) == ("deep", __file__)
    bare = error_info(KeyError("k"), prefer=tmp_path / "x.py")
    assert (bare.file, bare.line) == (str(tmp_path / "x.py"), None)
    assert error_info(KeyError("k")).file is None
    assert file_digest(tmp_path / "missing.py") == ""
    assert relative(tmp_path, None) is None
