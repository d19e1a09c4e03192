"""One run of a sidecar's program: its process, its protocol connection and its owner.

Over stdio (the default transport) the kernel reads the program's stdout as protocol
messages (one JSON object per line) and its stderr as log lines; it writes protocol
messages to its stdin. Over NATS (``_nats.py``) the same messages travel on the run's two
subjects, and stdout is logged like stderr; the process is the kernel's either way, so its
exit is what tells that the program has gone. What the program
registers (routes, subscriptions) is owned by this run's :class:`Owner`, pending until the
program says ``ready`` and the supervisor swaps it in. When the process ends, calls into it
fail at once (``SidecarUnavailable``, 503) instead of waiting for their timeout.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import re
import shlex
import signal
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import msgspec
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream
from starlette.responses import Response

from microcore import Event, MicroCoreError, RequestTimeout
from microcore.tooling import (
    Owner,
    RegistrationError,
    causation,
    current_correlation_id,
    current_event_id,
    new_id,
)
from tools.http import Context, HttpError

from . import _protocol as p
from ._declaration import Declaration
from ._nats import NatsLink, TooLarge

if TYPE_CHECKING:
    from tools.event_bus import EventBus
    from tools.http import Http

    from ._settings import SidecarSettings

__all__ = ("Instance", "SidecarError", "SidecarUnavailable")

_STDERR_TAIL = 5  # log lines (stderr; stdout over NATS) kept to say why a program ended
_CONCURRENT_CALLS = 64  # publish/request messages of one program handled at once


class SidecarUnavailable(MicroCoreError):
    """The sidecar's program is not running (it crashed, or is restarting)."""

    code = "sidecar_unavailable"
    http_status = 503


class SidecarError(MicroCoreError):
    """The program answered a call with an error."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class _Waiter:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: Exception | None = None


class Instance:
    """One process of a sidecar. ``run`` lives as long as the process; ``stop`` ends it."""

    def __init__(
        self,
        decl: Declaration,
        owner: Owner,
        *,
        http: Http,
        bus: EventBus,
        settings: SidecarSettings,
        commit: Callable[[Instance], bool],
    ) -> None:
        self.decl = decl
        self.owner = owner
        self.http = http
        self.bus = bus
        self.settings = settings
        self._commit = commit
        self.log = structlog.get_logger("microcore.sidecar", tool="sidecar", plugin=owner.identity)
        self.process: anyio.abc.Process | None = None
        self.pid: int | None = None
        self.returncode: int | None = None
        self.alive = False  # the process runs and its stdout is open
        self.committed = False  # swapped in: its registrations serve
        self.abandoned = False  # its start timed out: a late ``ready`` is refused
        self.stopping = False
        self.error: str | None = None  # why it ended (or never became ready)
        self.settled = anyio.Event()  # ready, or ended
        self.exited = anyio.Event()
        self._pending: dict[str, _Waiter] = {}
        self._causes: dict[str, tuple[str, str | None]] = {}
        self._ids = itertools.count(1)
        self._send_lock = anyio.Lock()
        self._calls = anyio.Semaphore(_CONCURRENT_CALLS)
        self._stderr: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._stderr_done = anyio.Event()
        self._stdout_done = anyio.Event()  # read as log lines (NATS transport only)
        self.transport = _transport(decl, settings)
        self.link: NatsLink | None = None

    # -- the process ---------------------------------------------------------------------

    async def run(self) -> None:
        """Start the program and serve its messages until it ends (a background task)."""
        try:
            await self._run()
        finally:
            if self.link is not None:
                with anyio.CancelScope(shield=True):
                    await self.link.close()
            self.settled.set()
            self.exited.set()

    async def _run(self) -> None:
        decl = self.decl
        env = {
            **os.environ,
            **decl.env,
            "MICROCORE_SIDECAR": decl.identity,
            "MICROCORE_SIDECAR_TRANSPORT": "stdio",
        }
        if self.transport == "nats":
            self.error = await self._open_link()
            if self.link is None:
                return
            env.update(self.link.env())
        try:
            process = await anyio.open_process(
                list(decl.command), cwd=decl.cwd, env=env, start_new_session=True
            )
        except OSError as exc:
            self.error = f"cannot start {shlex.join(decl.command)}: {exc}"
            return
        self.process, self.pid, self.alive = process, process.pid, True
        self.log = self.log.bind(pid=process.pid)
        self.log.info("sidecar_started", command=shlex.join(decl.command), transport=self.transport)
        try:
            async with anyio.create_task_group() as tg:
                assert process.stdout is not None and process.stderr is not None  # pipes: always
                tg.start_soon(self._read_log, process.stderr, "sidecar_stderr", self._stderr_done)
                if self.link is None:
                    self._stdout_done.set()
                    await self._read_stdout(process.stdout, tg)
                else:
                    out = process.stdout
                    tg.start_soon(self._read_log, out, "sidecar_stdout", self._stdout_done)
                    tg.start_soon(self._read_link, self.link, tg)
                    await process.wait()
                self.alive = False
                self._fail_pending()
                with anyio.move_on_after(self.settings.stop_timeout):
                    await process.wait()
                    await self._stderr_done.wait()
                    await self._stdout_done.wait()
                tg.cancel_scope.cancel()  # in-flight publish/request calls of a dead program
        finally:
            with anyio.CancelScope(shield=True):
                await self._reap(process)
            self.alive = False
            self._fail_pending()
            self.returncode = process.returncode
            if self.error is None and not self.stopping:
                tail = " | ".join(self._stderr)
                self.error = f"exited with code {process.returncode}" + (
                    f": {tail}" if tail else ""
                )

    async def _open_link(self) -> str | None:
        """Connect this run's NATS link (``self.link``); why not, else None."""
        url = self.settings.nats_url
        if url is None:  # the tool refuses such a declaration; this run cannot start either
            return 'transport = "nats" needs the event bus on NATS (EVENT_BUS_URL=nats://...)'
        link = NatsLink(url, self.decl.identity, self.settings.subject_root)
        try:
            await link.open()
        except ConnectionError as exc:
            return f"cannot reach NATS at {url}: {exc}"
        self.link = link
        self.log = self.log.bind(subject_in=link.subject_in)
        return None

    async def _reap(self, process: anyio.abc.Process) -> None:
        if process.returncode is None:
            self._signal(signal.SIGKILL)
            with anyio.move_on_after(self.settings.stop_timeout):
                await process.wait()
        await process.aclose()

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the program's whole process group (it runs in a session of its own)."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # it has already gone
            os.killpg(self.pid, sig)

    async def stop(self) -> None:
        """End the program: close its stdin (the protocol's "stop"; over NATS a ``stop``
        message first), then SIGTERM after half of ``SIDECAR_STOP_TIMEOUT``, then SIGKILL;
        returns once it has exited."""
        self.stopping = True
        if self.link is not None and self.alive:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1.0),
                contextlib.suppress(SidecarUnavailable, SidecarError),
            ):
                await self.send({"type": "stop"})
        if self.process is not None and self.process.stdin is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                await self.process.stdin.aclose()
        half = self.settings.stop_timeout / 2
        with anyio.CancelScope(shield=True):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with anyio.move_on_after(half):
                    await self.exited.wait()
                if self.exited.is_set():
                    return
                self.log.warning("sidecar_signalled", signal=sig.name, seconds=half)
                self._signal(sig)
            with anyio.move_on_after(self.settings.stop_timeout):
                await self.exited.wait()

    # -- reading -------------------------------------------------------------------------

    async def _read_log(
        self, stream: anyio.abc.ByteReceiveStream, event: str, done: anyio.Event
    ) -> None:
        """Log each line of ``stream`` (stderr; stdout too over NATS) as ``event``."""
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                try:
                    raw = await reader.receive_until(b"\n", 65536)
                except anyio.DelimiterNotFound:
                    raw = await reader.receive(65536)
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self._stderr.append(line)
                    self.log.info(event, line=line)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            pass
        finally:
            done.set()

    async def _read_link(self, link: NatsLink, tg: anyio.abc.TaskGroup) -> None:
        """Serve the messages the program sends on its ``.out`` subject."""
        async for data in link.messages():
            try:
                message = p.decode(data)
            except msgspec.DecodeError as exc:
                await self._refuse(data, exc)
                continue
            await self._dispatch(message, tg)

    async def _read_stdout(
        self, stream: anyio.abc.ByteReceiveStream, tg: anyio.abc.TaskGroup
    ) -> None:
        reader = BufferedByteReceiveStream(stream)
        limit = self.settings.max_line
        while True:
            try:
                line = await reader.receive_until(b"\n", limit)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                return
            except anyio.DelimiterNotFound:
                line = None
            if line is None or len(line) > limit:  # anyio checks the limit per read, not line
                self.error = f"sent a line longer than {limit} bytes (SIDECAR_MAX_LINE)"
                self.log.error("sidecar_protocol_error", error=self.error)
                return
            if not line.strip():
                continue
            try:
                message = p.decode(line)
            except msgspec.DecodeError as exc:
                await self._refuse(line, exc)
                continue
            await self._dispatch(message, tg)

    async def _refuse(self, line: bytes, exc: msgspec.DecodeError) -> None:
        """A line that is no protocol message: a stray print is logged, a bad message is
        answered with an error when it has an id."""
        text = line.decode("utf-8", "replace").rstrip()
        if not text.lstrip().startswith("{") and self.link is None:
            self.log.info("sidecar_stdout", line=text)
            return
        self.log.warning("sidecar_bad_message", line=text[:500], error=str(exc))
        try:
            raw = msgspec.json.decode(line)
        except msgspec.DecodeError:
            return
        if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
            await self._answer(p.error(raw["id"], "bad_message", str(exc)))

    async def _dispatch(self, message: p.Incoming, tg: anyio.abc.TaskGroup) -> None:
        if isinstance(message, p.Reply | p.Failure):
            waiter = self._pending.get(str(message.id))
            if waiter is None:
                self.log.warning("sidecar_unexpected_reply", id=message.id)
                return
            if isinstance(message, p.Failure):
                body = message.error
                waiter.error = SidecarError(body.code, body.message, body.status)
            else:
                waiter.value = message.result
            waiter.done.set()
        elif isinstance(message, p.LogLine):
            level = message.level if message.level in _LEVELS else "info"
            getattr(self.log, level)(message.message, **message.fields)
        elif isinstance(message, p.Hello):
            await self._answer(self._welcome(message))
        elif isinstance(message, p.Subscribe | p.Respond | p.Route):
            await self._answer(await self._register(message))
        elif isinstance(message, p.Ready):
            if self._commit(self):
                self.committed = True
                self.settled.set()
                await self._answer(p.result(message.id))
            else:
                await self._answer(p.error(message.id, "not_started", "the start was abandoned"))
        else:  # Publish | Request: concurrently, at most _CONCURRENT_CALLS at once
            await self._calls.acquire()
            tg.start_soon(self._bus_call, message)

    def _welcome(self, hello: p.Hello) -> dict[str, Any]:
        if hello.protocol != p.PROTOCOL:
            return p.error(
                hello.id,
                "protocol_mismatch",
                f"this kernel speaks sidecar protocol {p.PROTOCOL}, not {hello.protocol}",
            )
        return p.result(hello.id, {"protocol": p.PROTOCOL, "identity": self.decl.identity})

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            await self.send(message)
        except SidecarUnavailable:  # it has gone; the supervisor sees it end
            pass
        except SidecarError as exc:  # over NATS's max_payload: the call fails, saying why
            self.log.warning("sidecar_answer_refused", error=str(exc))
            if message.get("type") == "result":
                with contextlib.suppress(SidecarUnavailable, SidecarError):
                    await self.send(p.error(message["id"], exc.code, str(exc)))

    # -- registering ---------------------------------------------------------------------

    async def _register(self, message: p.Subscribe | p.Respond | p.Route) -> dict[str, Any]:
        decl, where = self.decl, f"{self.decl.file.name} [declares]"
        try:
            if isinstance(message, p.Route):
                method = message.method.upper()
                if (method, message.path) not in decl.routes:
                    raise RegistrationError(
                        f"route {method} {message.path} is not declared; add "
                        f'"{method} {message.path}" to routes in {where}'
                    )
                self.http.add_endpoint(
                    message.path,
                    method,
                    self._forwarder(message),
                    request_model=_request_model(decl.identity, method, message),
                    status_code=message.status_code,
                    summary=message.summary,
                    tags=message.tags or None,
                    auth=message.auth,
                )
            else:
                pattern = message.pattern if isinstance(message, p.Subscribe) else message.name
                if pattern not in decl.patterns:
                    key = "subscribes" if isinstance(message, p.Subscribe) else "responds"
                    raise RegistrationError(
                        f"{pattern!r} is not declared; add it to {key} in {where}"
                    )
                if isinstance(message, p.Subscribe):
                    deliver = self._deliverer(pattern)
                    await self.bus.subscribe(pattern, deliver, retries=message.retries)
                else:  # whatever the program answers, null included, is the reply
                    await self.bus.respond(pattern, self._deliverer(pattern))
        except MicroCoreError as exc:
            self.log.warning("sidecar_registration_refused", error=str(exc))
            return p.error(message.id, exc.code, str(exc))
        return p.result(message.id)

    def _deliverer(self, pattern: str) -> Callable[[Event], Any]:
        async def deliver(event: Event) -> Any:
            message = {"type": "event", "subscription": pattern, "event": _event_json(event)}
            return await self.call(message, self.settings.call_timeout, f"event {event.name!r}")

        deliver.__qualname__ = f"sidecar {self.decl.identity}"
        return deliver

    def _forwarder(self, route: p.Route) -> Callable[[Any, Context], Any]:
        timeout = route.timeout or self.settings.http_timeout
        identity = self.decl.identity

        async def forward(data: Any, context: Context) -> Response:
            if not self.alive:
                raise SidecarUnavailable(
                    f"sidecar {identity!r} is not running (it is restarting); try again shortly"
                )
            body = await context.body()
            message = {
                "type": "http",
                "method": context.method,
                "path": context.path,
                "route": route.path,
                "params": context.params,
                "query": dict(parse_qsl(context.scope["query_string"].decode("latin-1"))),
                "headers": _headers(context),
                "client": context.client,
                "identity": context.identity,
                "data": data,
                **_body(body),
            }
            try:
                reply = await self.call(message, timeout, f"{context.method} {context.path}")
            except SidecarError as exc:
                if exc.status is not None and 400 <= exc.status <= 599:
                    raise HttpError(exc.status, exc.code, str(exc)) from None
                raise
            return _response(reply, route.status_code, identity)

        return forward

    # -- calls in both directions ----------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message to the program (bounded by ``SIDECAR_CALL_TIMEOUT``)."""
        process = self.process
        if not self.alive or process is None or process.stdin is None:
            raise SidecarUnavailable(f"sidecar {self.decl.identity!r} is not running")
        data = p.encode(message)
        if self.link is not None:
            await self._publish(self.link, data)
            return
        try:
            async with self._send_lock:
                with anyio.fail_after(self.settings.call_timeout):
                    await process.stdin.send(data)
        except TimeoutError:
            self.error = "stopped reading its stdin"
            self._signal(signal.SIGKILL)
            raise SidecarUnavailable(f"sidecar {self.decl.identity!r} {self.error}") from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise SidecarUnavailable(f"sidecar {self.decl.identity!r} is not running") from exc

    async def _publish(self, link: NatsLink, data: bytes) -> None:
        try:
            with anyio.fail_after(self.settings.call_timeout):
                await link.send(data)
        except TooLarge as exc:
            raise SidecarError("payload_too_large", str(exc), 413) from None
        except (TimeoutError, ConnectionError) as exc:
            why = "its NATS connection is closed" if isinstance(exc, ConnectionError) else None
            why = why or f"NATS took over {self.settings.call_timeout:g} s to take a message"
            raise SidecarUnavailable(f"sidecar {self.decl.identity!r}: {why}") from None

    async def call(self, message: dict[str, Any], timeout: float, what: str) -> Any:
        """Send a message that the program answers; its result (``RequestTimeout`` when no
        answer comes in ``timeout`` s, ``SidecarUnavailable`` when the program ends first)."""
        call_id = f"k{next(self._ids)}"
        waiter = _Waiter()
        self._pending[call_id] = waiter
        self._causes[call_id] = (current_correlation_id() or new_id(), current_event_id())
        try:
            with anyio.fail_after(timeout):
                await self.send({**message, "id": call_id})
                await waiter.done.wait()
        except TimeoutError:
            raise RequestTimeout(
                f"sidecar {self.decl.identity!r} did not answer {what} within {timeout:g} s"
            ) from None
        finally:
            del self._pending[call_id]
            del self._causes[call_id]
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def _fail_pending(self) -> None:
        for waiter in self._pending.values():
            if not waiter.done.is_set():
                waiter.error = SidecarUnavailable(
                    f"sidecar {self.decl.identity!r} ended before it answered"
                )
                waiter.done.set()

    async def _bus_call(self, message: p.Publish | p.Request) -> None:
        try:
            cause = self._causes.get(str(message.cause)) if message.cause is not None else None
            with causation(*cause) if cause else contextlib.nullcontext():
                if isinstance(message, p.Publish):
                    event_id = await self.bus.publish(message.name, message.payload)
                    answer = p.result(message.id, {"id": event_id})
                else:
                    reply = await self.bus.request(message.name, message.payload, message.timeout)
                    answer = p.result(message.id, msgspec.to_builtins(reply))
        except MicroCoreError as exc:
            answer = p.error(message.id, exc.code, str(exc))
        except Exception as exc:  # isolation boundary: one call of the program (logged)
            self.log.exception("sidecar_call_failed", name=message.name)
            answer = p.error(message.id, "error", f"{type(exc).__name__}: {exc}")
        finally:
            self._calls.release()
        await self._answer(answer)


_LEVELS = ("debug", "info", "warning", "error")


def _transport(decl: Declaration, settings: SidecarSettings) -> str:
    """``stdio`` or ``nats``: what the declaration asks (``auto``: NATS when the bus is)."""
    if decl.transport == "auto":
        return "nats" if settings.nats_url is not None else "stdio"
    return decl.transport


_FIELD_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _request_model(identity: str, method: str, route: p.Route) -> Any:
    """A Struct of the route's declared ``fields``: validated (422 naming the field) and
    documented in /openapi.json like a Python route's request model; None without fields."""
    if not route.fields:
        return None
    spec: list[Any] = []
    for name, kind in route.fields.items():
        field_type = _FIELD_TYPES.get(kind.removesuffix("?"))
        if field_type is None or not name.isidentifier():
            raise RegistrationError(
                f"route {method} {route.path}: field {name!r} has type {kind!r}; name each "
                "field with an identifier and one of str, int, float, bool (? if optional)"
            )
        spec.append((name, field_type | None, None) if kind.endswith("?") else (name, field_type))
    words = re.findall(r"[A-Za-z0-9]+", f"{identity.split('.', 1)[1]} {method} {route.path}")
    return msgspec.defstruct("".join(w.capitalize() for w in words), spec, kw_only=True)


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "name": event.name,
        "payload": msgspec.to_builtins(event.payload),
        "id": event.id,
        "correlation_id": event.correlation_id,
        "source": event.source,
        "timestamp": event.timestamp,
    }


def _headers(context: Context) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in context.scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _body(body: bytes) -> dict[str, Any]:
    if not body:
        return {"body": ""}
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}


class _Answer(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: int | None = None
    headers: dict[str, str] = {}
    json: Any = msgspec.UNSET
    text: str | None = None
    body_base64: str | None = None


def _response(reply: Any, status_code: int, identity: str) -> Response:
    """The program's answer to an ``http`` message as a response: ``{"status", "headers",
    and one of "json", "text", "body_base64"}``."""
    try:
        answer = msgspec.convert(reply, _Answer)
    except msgspec.ValidationError as exc:
        raise SidecarError(
            "bad_answer", f"sidecar {identity!r} answered an http message with {exc}"
        ) from None
    status = answer.status or status_code
    if not 100 <= status <= 599:
        raise SidecarError("bad_answer", f"sidecar {identity!r} answered status {status}")
    headers = dict(answer.headers)
    if answer.text is not None:
        content, media = answer.text.encode("utf-8"), "text/plain; charset=utf-8"
    elif answer.body_base64 is not None:
        content, media = base64.b64decode(answer.body_base64), "application/octet-stream"
    elif answer.json is not msgspec.UNSET:
        content, media = msgspec.json.encode(answer.json), "application/json"
    else:
        content, media = b"", None
    if media is not None and not any(k.lower() == "content-type" for k in headers):
        headers["content-type"] = media
    return Response(content, status, headers)
