"""structlog configuration and the line writer: the one place that touches logging's global state.

structlog renders each line (msgspec for JSON, its ``ConsoleRenderer`` for the console) and
hands it to a :class:`LineWriter`, which only appends it to a buffer: a writer thread writes
the buffer to stderr in batches, so a slow or blocked stderr never stalls the event loop.
Lines of the access logger (:data:`ACCESS_LOGGER`) may be dropped when the buffer is full
(:func:`dropped_log_lines` counts them); every other line is kept, whatever the level.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import msgspec
import structlog

from .tracing import TRACING, add_trace_ids

__all__ = (
    "ACCESS_LOGGER",
    "AccessLogger",
    "LineWriter",
    "configure_logging",
    "dropped_log_lines",
    "flush",
    "reset",
)

ACCESS_LOGGER = "microcore.access"  # structlog.get_logger(ACCESS_LOGGER): lines that may drop
CAPACITY = 10_000  # lines waiting before access lines are dropped (~2 MB of JSON)
INTERVAL = 0.25  # seconds between the writer's batches when nothing hurries it
_URGENT = frozenset(("warning", "warn", "error", "critical", "fatal", "exception"))

_time = time.time
_configured: dict[str, Any] = {}
_fast: list[_FastPath] = []  # what AccessLogger needs to skip the bound logger (JSON only)
_writer: list[LineWriter] = []  # the current writer, if any (a list: no `global`)
_dropped_before: list[int] = [0]  # access lines dropped by writers already closed


class LineWriter:
    """Rendered lines to ``stream``, written by a background thread in batches.

    :meth:`write` appends to a buffer and returns (no system call on the caller's thread).
    A droppable line finding ``capacity`` lines already waiting is dropped and counted in
    :attr:`dropped`; other lines are always kept, so the buffer only outgrows
    ``capacity`` by lines that must not be lost. Warnings and errors wake the writer at
    once; other lines are written within ``interval`` seconds. A stream without a file
    descriptor (a test's captured stderr, a ``StringIO``) cannot block: it is written at
    once, on the caller's thread, and no thread is started.
    """

    def __init__(
        self, stream: TextIO, *, capacity: int = CAPACITY, interval: float = INTERVAL
    ) -> None:
        self.stream = stream
        self.capacity = capacity
        self._hurry = max(1, capacity // 4)  # lines that wake the writer before its interval
        self._full = 0  # droppable lines refused because the buffer was full
        self._lost = 0  # lines a failing stream did not take (counted by the writer thread)
        self._lines: deque[bytes] = deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._queued = 0  # lines accepted so far
        self._written = 0  # lines written (or lost to a failed stream) so far
        self._closing = False
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._fd = None
        self._thread: threading.Thread | None = None
        self._room = 0  # lines a droppable line may find queued: 0 while lines go out at once
        if self._fd is not None:
            self._room = capacity
            self._interval = interval
            self._thread = threading.Thread(target=self._run, name="microcore-log", daemon=True)
            self._thread.start()

    def write_droppable(self, line: bytes) -> None:
        """``write(line, droppable=True)`` for the hot path (the access log): one call, no
        keywords; dropped when ``capacity`` lines already wait."""
        lines = self._lines
        if self._fd is None:
            self._write_now(line)
        elif len(lines) < self._room:
            self._queued += 1
            lines.append(line)
            if len(lines) >= self._hurry:
                self._wake.set()
        else:
            self._full += 1

    def write(self, line: bytes, *, droppable: bool = False, urgent: bool = False) -> None:
        """Queue one line (with its newline); ``urgent`` wakes the writer now (a kept line:
        a ``droppable`` one goes through :meth:`write_droppable`)."""
        if droppable:
            self.write_droppable(line)
            return
        if self._fd is None:
            self._write_now(line)
            return
        self._queued += 1
        self._lines.append(line)
        if urgent or len(self._lines) >= self._hurry:
            self._wake.set()

    @property
    def dropped(self) -> int:
        """Lines not written: refused by a full buffer, or lost to a failing stream."""
        return self._full + self._lost

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far is written; ``False`` if ``timeout`` passed."""
        if self._thread is None:
            return True
        target = self._queued
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued, then stop the thread; ``False`` if it did not finish in time."""
        if self._thread is None:
            return True
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._fd = None  # a line logged after this is written at once
        self._room = 0
        return True

    def _write_now(self, line: bytes) -> None:
        try:
            self.stream.write(line.decode("utf-8", "replace"))
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream: nowhere left to report it
            self._lost += 1

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            closing = self._closing
            self._drain()
            if closing:
                return

    def _drain(self) -> None:
        lines = self._lines
        while lines:
            batch = [lines.popleft() for _ in range(min(len(lines), 1024))]
            data = b"".join(batch)
            try:
                while data:
                    data = data[os.write(self._fd, data) :]  # type: ignore[arg-type]
            except OSError:  # the stream is gone (closed pipe): the lines are lost, counted
                self._lost += len(batch)
            with self._done:
                self._written += len(batch)
                self._done.notify_all()


class _Sink:
    """What structlog hands the rendered line to: the current :class:`LineWriter`."""

    __slots__ = ("droppable", "writer")

    def __init__(self, writer: LineWriter, *, droppable: bool) -> None:
        self.writer = writer
        self.droppable = droppable

    def info(self, rendered: str | bytes) -> None:
        """A line at debug or info level (the access log's)."""
        line = rendered.encode("utf-8") if isinstance(rendered, str) else rendered
        self.writer.write(line + b"\n", droppable=self.droppable)

    def error(self, rendered: str | bytes) -> None:
        """A warning or error: kept even when the buffer is full, and written at once."""
        line = rendered.encode("utf-8") if isinstance(rendered, str) else rendered
        self.writer.write(line + b"\n", urgent=True)

    debug = msg = info
    warning = warn = critical = fatal = exception = error


def _fallback(obj: Any) -> Any:
    """How a value msgspec cannot encode is logged: structlog's rule (``__structlog__``,
    else ``repr``), and a placeholder when even that fails (logging never raises)."""
    try:
        structlog_value = getattr(obj, "__structlog__", None)
        return structlog_value() if callable(structlog_value) else repr(obj)
    except Exception:  # noqa: BLE001 - isolation boundary: one field of one log line
        return f"<{type(obj).__qualname__}: repr failed>"


_encode = msgspec.json.Encoder(enc_hook=_fallback).encode


def _render_json(logger: Any, name: str, event: dict[str, Any]) -> bytes:
    """One JSON object, by msgspec; a line that cannot be encoded (a cycle) says so."""
    try:
        return _encode(event)
    except Exception as exc:  # noqa: BLE001 - isolation boundary: one log line
        keep = ("event", "level", "timestamp")
        line = {key: str(event[key]) for key in keep if key in event}
        line["log_error"] = f"fields not encodable: {type(exc).__name__}: {exc}"
        return _encode(line)


class _Stamp:
    """``timestamp``: ISO 8601 UTC with microseconds, the date part formatted once a second."""

    __slots__ = ("pattern", "second")

    def __init__(self) -> None:
        self.second = -1
        self.pattern = ""  # "2026-01-01T00:00:00.%06dZ" for the current second

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        event["timestamp"] = self.now()
        return event

    def now(self) -> str:
        """The current time as the ``timestamp`` field shows it."""
        now = _time()  # a float: time_ns() would cost big-integer arithmetic on every line
        second = int(now)
        if second != self.second:
            self.roll(second)
        return self.pattern % ((now - second) * 1e6)  # %d truncates: 0..999999

    def roll(self, second: int) -> None:
        """Format the date and time of ``second`` (a new second began)."""
        self.pattern = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + ".%06dZ"
        self.second = second


class _FastPath:
    """The configured chain (mutated in place by ``structlog.testing.capture_logs``), its
    JSON renderer, time stamper and writer."""

    __slots__ = ("chain", "renderer", "stamp", "writer")

    def __init__(self, chain: list[Any], stamp: _Stamp, writer: LineWriter) -> None:
        self.chain = chain
        self.renderer = chain[-1]
        self.stamp = stamp
        self.writer = writer


# The ContextVars behind structlog.contextvars.bind_contextvars, by prefixed key. structlog's
# merge_contextvars walks every variable of the context (asyncio's, anyio's, sniffio's...)
# to find its own; walking its registry instead costs a lookup per bound key. Private: when
# a structlog release renames it, the public (slower) processor is used.
_BOUND: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
_PREFIX = len(structlog.contextvars.STRUCTLOG_KEY_PREFIX)


_bound_vars: tuple[int, tuple[tuple[str, Any], ...]] = (-1, ())  # (registry size, its items)


def _merge(logger: Any, name: str, event: Any) -> Any:
    """structlog's ``merge_contextvars``: the context-local values, the line's own first."""
    global _bound_vars
    if _BOUND is None:
        return structlog.contextvars.merge_contextvars(logger, name, event)
    size, items = _bound_vars
    if size != len(_BOUND):  # a key bound for the first time (the registry only grows)
        items = tuple((key[_PREFIX:], var) for key, var in tuple(_BOUND.items()))
        _bound_vars = (len(items), items)
    for key, var in items:
        value = var.get()
        if value is not Ellipsis and key not in event:
            event[key] = value
    return event


class AccessLogger:
    """One access line per request at the cost of a dict and an encode.

    The line is what structlog's configured chain would write for
    ``structlog.get_logger(ACCESS_LOGGER).bind(**bound).info(event, **fields)`` (the
    contextvars merged, level, timestamp, msgspec JSON) without the bound logger's
    per-call machinery, and it goes to the log writer as a droppable line. With the console
    format, a level above INFO, or a replaced chain (``capture_logs``), it is exactly that
    structlog call. Make it after :func:`configure_logging` (a tool's ``setup``)::

        access = AccessLogger(tool="http")
        access.info("http_request", method="GET", path="/ping", status=200)
    """

    __slots__ = ("_bound", "_fast", "_log")

    def __init__(self, **bound: Any) -> None:
        self._bound = bound
        self._log = structlog.get_logger(ACCESS_LOGGER).bind(**bound)
        info_on = self._log.is_enabled_for(logging.INFO)
        self._fast = _fast[0] if _fast and info_on else None

    def prepare(self, event: str, names: tuple[str, ...]) -> Callable[..., None]:
        """A function logging ``event`` with the fields ``names``, given by position: the
        same line as ``info(event, **dict(zip(names, values)))``, cheaper (the line's shape
        is built once, here)::

            line = access.prepare("http_request", ("method", "path", "status"))
            line("GET", "/ping", 200)
        """
        return _Prepared(self, event, names).log

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at info level."""
        fast = self._fast
        if fast is None or fast.chain[-1] is not fast.renderer:
            self._log.info(event, **fields)
            return
        line = {**self._bound, **fields, "event": event}
        _merge(None, "info", line)
        line["level"] = "info"
        if TRACING.enabled:
            add_trace_ids(None, "info", line)
        line["timestamp"] = fast.stamp.now()
        fast.writer.write_droppable(_render_json(None, "info", line) + b"\n")


class _Prepared:
    """One access line's fixed shape: a msgspec ``Struct`` whose fields are the bound ones,
    ``names``, ``event``, ``level`` and ``timestamp`` (their keys encoded once, by msgspec),
    filled by position. It serves while the line is exactly that: the JSON chain in place,
    tracing off and no other contextvars bound; otherwise :meth:`AccessLogger.info` writes it."""

    __slots__ = ("_event", "_extra", "_fast", "_logger", "_make", "_names", "_seen")

    def __init__(self, logger: AccessLogger, event: str, names: tuple[str, ...]) -> None:
        self._logger = logger
        self._event = event
        self._names = names
        self._fast: _FastPath | None = None
        self._make: Callable[..., Any] = dict  # the Struct, its bound values given (below)
        self._seen = -1  # the contextvars registry's size when ``_extra`` was taken
        self._extra: tuple[Any, ...] = ()  # the bound contextvars the line does not carry
        fields = [*logger._bound, *names, "event", "level", "timestamp"]
        if logger._fast is not None and _BOUND is not None and len(set(fields)) == len(fields):
            line = msgspec.defstruct("AccessLine", fields, gc=False)
            self._make = functools.partial(line, *logger._bound.values())
            self._fast = logger._fast

    def log(self, *values: Any) -> None:
        fast = self._fast
        if fast is None or fast.chain[-1] is not fast.renderer or TRACING.enabled:
            self._general(values)
            return
        if self._seen != len(_BOUND):  # type: ignore[arg-type]  # a key bound for the first time
            self._refresh()
        for var in self._extra:
            if var.get() is not Ellipsis:  # bound now: the general path merges it
                self._general(values)
                return
        now = _time()  # the timestamp, as _Stamp.now writes it (inlined: once per request)
        second = int(now)
        stamp = fast.stamp
        if second != stamp.second:
            stamp.roll(second)
        try:
            line = _encode(
                self._make(*values, self._event, "info", stamp.pattern % ((now - second) * 1e6))
            )
        except Exception:  # noqa: BLE001 - a value msgspec refuses: the general path says so
            self._general(values)
            return
        writer = fast.writer  # its write_droppable, inlined
        lines = writer._lines
        if len(lines) < writer._room:
            writer._queued += 1
            lines.append(line + b"\n")
            if len(lines) >= writer._hurry:
                writer._wake.set()
        else:
            writer.write_droppable(line + b"\n")

    def _general(self, values: tuple[Any, ...]) -> None:
        self._logger.info(self._event, **dict(zip(self._names, values, strict=True)))

    def _refresh(self) -> None:
        own = {*self._logger._bound, *self._names}
        registry = tuple(_BOUND.items())  # type: ignore[union-attr]
        self._extra = tuple(var for key, var in registry if key[_PREFIX:] not in own)
        self._seen = len(registry)


def configure_logging(*, fmt: str | None = None, level: str = "INFO") -> None:
    """Configure structlog once per process: console lines in a terminal, JSON lines otherwise.

    ``fmt`` is ``"console"`` or ``"json"`` (``LOG_FORMAT``); ``None`` picks by ``isatty``.
    Lines go to ``sys.stderr`` as it is now, through a :class:`LineWriter`.
    """
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt not in ("console", "json"):
        from .errors import ConfigurationError

        raise ConfigurationError(f"LOG_FORMAT must be 'console' or 'json', got {fmt!r}")
    wanted = {"fmt": fmt, "level": level.upper(), "stream": sys.stderr}
    if _configured == wanted:
        return
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else _render_json
    )
    _close_writer()
    writer = LineWriter(sys.stderr)
    _writer.append(writer)
    sinks = {True: _Sink(writer, droppable=True), False: _Sink(writer, droppable=False)}
    stamp = _Stamp()
    chain = [
        _merge,
        structlog.processors.add_log_level,
        add_trace_ids,
        stamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info if fmt == "json" else _identity,
        renderer,
    ]
    _fast.clear()
    if fmt == "json":
        _fast.append(_FastPath(chain, stamp, writer))
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=lambda *args: sinks[bool(args) and args[0] == ACCESS_LOGGER],
        cache_logger_on_first_use=False,
    )
    _configured.clear()
    _configured.update(wanted)


def _identity(logger: Any, name: str, event: Any) -> Any:
    return event


def dropped_log_lines() -> int:
    """Access log lines dropped since the process started (the log stream fell behind)."""
    return _dropped_before[0] + sum(writer.dropped for writer in _writer)


def flush(timeout: float = 5.0) -> bool:
    """Write every line logged so far (at shutdown); ``False`` if ``timeout`` passed first."""
    return all(writer.flush(timeout) for writer in _writer)


def _close_writer() -> None:
    while _writer:
        writer = _writer.pop()
        writer.close()
        _dropped_before[0] += writer.dropped


def reset() -> None:
    """Write what is queued and forget the configuration (tests)."""
    _close_writer()
    _fast.clear()
    _configured.clear()
    structlog.reset_defaults()


atexit.register(_close_writer)  # a normal exit writes what is still queued
