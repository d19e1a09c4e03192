"""The NATS backend (``EVENT_BUS_URL=nats://host:4222``): the same bus across replicas.

Everything plugins see (names, patterns, retries, dead letters, causality,
history) stays in the bus above this backend; the backend only carries events
between processes.

Events (``publish``) are durable, on JetStream:

* One stream, ``EVENT_BUS_STREAM`` (default ``microcore``, created if missing,
  file storage), stores every event under ``<stream>.<name>``. ``publish``
  returns once the stream stored the event (acknowledged), retrying through
  reconnects for up to ``EVENT_BUS_PUBLISH_TIMEOUT`` with the event id as
  ``Nats-Msg-Id``, so a retried publish is stored once. An attempt is only
  made while connected: nats-py would otherwise buffer it and send it after a
  reconnect, storing an event whose ``publish`` had already raised
  ``PublishTimeout``. So ``PublishTimeout`` means NATS never got the event
  (while it stays unreachable) and it is not delivered later; the one
  exception is an attempt sent just before the connection broke, when NATS
  does not come back before the timeout (then nobody can know).
* The stream keeps events by limits (``EVENT_BUS_RETENTION``), not by
  interest: an interest stream with no consumer at that moment acknowledges
  an event without storing it, and while nats-server shuts down (SIGTERM) it
  stops its consumers before its stream, so the events published in those
  milliseconds were acknowledged and lost. What every consumer has acked is
  removed instead by :meth:`NatsBackend.trim`, run by each replica that
  published or acked since its last run (at most every ``_TRIM_EVERY``).
* Each plugin subscription is a durable push consumer (at most
  ``EVENT_BUS_BUFFER`` events unacked) whose deliver group (the queue group) is
  the plugin identity; every replica of the plugin joins it, so
  JetStream hands each event to one of them: an event is handled once per
  plugin across the fleet. The consumer's name comes from the identity and
  the pattern (``products_ProductStatsPlugin_1a2b3c4d5e``).
* A replica acks an event once its handler succeeded, or failed and the dead
  letter ``_dlq.<name>`` was stored. Retries happen in the replica, as on the
  in-process bus. An event whose replica died, or shut down before handling
  it, is redelivered to another replica: within half a second after a clean
  shutdown (nak), after ``EVENT_BUS_ACK_WAIT`` after a crash. While a replica works on an event
  it tells JetStream so every third of that wait, so slow handlers and long
  queues are not redelivered by mistake.
* Nothing acknowledged is lost: not through a NATS reconnect, a server restart
  (file storage), or every replica of a plugin being down: the consumer keeps
  the plugin's events for up to ``EVENT_BUS_RETENTION`` (7 days), and a consumer
  that nobody used for that long is removed. Delivery is at least once: after a
  crash, an event whose handler ran but was not acked yet runs again.
* Not durable: requests (below), events published while no subscription to them
  exists anywhere, and the order between replicas (each replica sees its share in
  stream order; a redelivered event comes late).

Broadcast subscriptions (``subscribe(..., broadcast=True)``) are plain core NATS
subscriptions to ``<stream>.<pattern>`` (no queue group, no consumer): every replica
gets each event JetStream stores, at most once and only while connected; nothing is
redelivered, and past ``EVENT_BUS_BUFFER`` waiting events a slow replica drops the
excess (logged). Responders (``respond``) join only the request queue group.

Requests (``request``) are core NATS request/reply, not stored: the request
goes to ``<stream>_req.<name>``, where each subscription listens in the queue
group of its plugin. A responder claims the request when it arrives, then
sends its outcome; the first non-``None`` value wins. NATS's no-responders
status is ``NoResponder``; no value within ``timeout`` is ``RequestTimeout``;
every claimed responder done without a value gives ``None``, or
``RequestFailed`` when one failed. A request that reached only replicas leaving
the subscription (unsubscribe, hot reload, shutdown) is sent again until a live
replica claims it or NATS says nobody subscribes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, cast

import anyio
import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from microcore import Event
from microcore.events import DLQ_PREFIX
from microcore.tooling import MicroCoreError

from .._backend import Publisher, Sink
from .._errors import BusClosed, PublishTimeout
from .._fanout import BROADCAST, RESPOND, SUBSCRIBE, Fanout, Request, Subscription
from .._settings import BusSettings
from .acks import Acks, Handled, Outbox
from .replies import Answers, RemoteReply, RemoteWaiter, offer, queue_to
from .wire import (
    GONE,
    Subjects,
    decode_event,
    decode_reply,
    decode_request,
    encode_event,
    encode_reply,
    encode_request,
)

__all__ = ("NatsBackend", "NatsUnavailable")

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")

_REFUSED_DELAY = 0.5  # s before an event refused by a draining replica is offered again
_ELSEWHERE_DELAY = 0.1  # s before an event that reached a just-unsubscribed replica goes on
_ASK_AGAIN = 0.05  # s before a request that reached only leaving replicas is sent again
_DUPLICATE_WINDOW = 120.0  # s during which a retried publish (same event id) is stored once
_TRIM_EVERY = 1.0  # s between removals of the events every consumer acked
_CONSUMERS_PAGE = 256  # consumers JetStream lists per request
_CONNECT_TIMEOUT = 2.0
_FLUSH_TIMEOUT = 2  # s (an int for nats-py)
_SETUP_RETRY = (0.1, 2.0)  # s: first and longest wait between attempts to bind a consumer
_STATUS = "Status"
_NO_RESPONDERS = "503"

Start = Callable[..., None]  # kernel.start_background(fn, *args, name=...)

# What can go wrong talking to NATS (a subset is retried by publish).
_NATS_ERRORS = (nats.errors.Error, OSError, TimeoutError)
_RETRYABLE = (
    nats.js.errors.ServiceUnavailableError,  # e.g. the stream's store closing (shutdown)
    nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.NoStreamResponseError,
    TimeoutError,
)


class NatsUnavailable(MicroCoreError, ConnectionError):
    """NATS (or its JetStream) cannot be reached or refused an operation."""

    code = "unavailable"
    http_status = 503


class _Binding:
    """The NATS side of one (pattern, plugin identity): a durable consumer and a request queue.

    Counted: the old and the new version of a hot-reloaded plugin share it, in
    whichever order they watch and unwatch; it is left once nobody uses it.
    """

    __slots__ = (
        "backlog",
        "group",
        "handled",
        "mode",
        "pattern",
        "pumped",
        "ready",
        "refs",
        "subs",
    )

    def __init__(self, pattern: str, group: str, mode: str = SUBSCRIBE) -> None:
        self.pattern = pattern
        self.group = group
        self.mode = mode  # SUBSCRIBE: consumer + requests; BROADCAST: core subject; RESPOND
        self.refs = 1
        self.ready = anyio.Event()  # set after the first attempt to bind (failed or not)
        self.subs: list[NatsSubscription] = []  # in the order they are left: requests first
        self.backlog: deque[Msg] = deque()  # events arrived here, not handed on yet
        self.pumped: anyio.Event | None = None  # set when the running _pump ends
        self.handled = Handled()  # what this consumer finished lately, or has in hand

    def targets(self, fanout: Fanout, name: str) -> list[Subscription]:
        """This process's active subscriptions the binding stands for (usually one)."""
        return [
            sub
            for sub in fanout.trie.match(name)
            if sub.identity == self.group and sub.pattern == self.pattern and sub.mode == self.mode
        ]


class NatsBackend:
    """Events on JetStream, requests on core NATS; see the module docstring."""

    def __init__(
        self,
        settings: BusSettings,
        *,
        start_background: Start,
        accepting: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._servers = [url.strip() for url in settings.url.split(",") if url.strip()]
        self._subjects = Subjects(settings.stream)
        self._start_background = start_background
        self._accepting = accepting
        self._nc: Client | None = None
        self._fanout: Fanout | None = None
        self._inbox = ""
        self._tokens = itertools.count(1)
        self._waiters: dict[str, RemoteWaiter] = {}
        self._stores: dict[str, asyncio.Future[Msg]] = {}  # publishes waiting for JetStream
        self._bindings: dict[tuple[str, str, str], _Binding] = {}
        self._pending: set[_Binding] = set()  # bindings publishers wait for (see _publish)
        self._drain_ids: set[str] = set()  # events published here while draining
        self._up = anyio.Event()  # set while connected (publish waits for it)
        self._dirty = anyio.Event()  # set when events were published or acks sent here
        self._outbox = Outbox(_NATS_ERRORS, sent=self._touched)  # acks, naks, progress
        self._answers = Answers(_NATS_ERRORS)  # claims and outcomes of requests served here
        self.acks = Acks(
            self._outbox, ack_wait=settings.ack_wait, publish_timeout=settings.publish_timeout
        )
        self._scopes: list[anyio.CancelScope] = []  # background loops close() cancels
        self._leaving: set[anyio.Event] = set()  # unbinds in progress, which close() awaits
        self._closing = False
        self._closed = False
        self._last_error: Exception | None = None

    # -- connecting --

    async def open(self, sink: Sink) -> None:
        # The bus always passes its Fanout: the backend queues to one subscription at a time.
        self._fanout = cast(Fanout, sink)
        where = ", ".join(self._servers)
        try:
            with anyio.fail_after(_CONNECT_TIMEOUT * (len(self._servers) + 1)):
                self._nc = await nats.connect(
                    servers=self._servers,
                    name=f"microcore:{self._settings.stream}",
                    connect_timeout=_CONNECT_TIMEOUT,
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=1,  # at boot: fail fast and say why
                    drain_timeout=self._settings.drain_timeout,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except Exception as exc:  # nats-py raises many kinds; one clear error instead
            reason = self._last_error or exc
            raise NatsUnavailable(
                f"cannot connect to NATS at {where} (EVENT_BUS_URL): {type(reason).__name__}: "
                f"{reason}; start it (nats-server -js) or fix the URL"
            ) from exc
        self._nc.options["max_reconnect_attempts"] = -1  # once up, outlive NATS restarts
        try:
            await self._ensure_stream()
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._nc.close()
            raise
        self._up.set()
        self._start(self._outbox.run, name="event_bus:nats:outbox")
        self._start(self._answers.run, self._nc.publish, name="event_bus:nats:answers")
        self._start(self._trim_loop, name="event_bus:nats:trim")
        self._start(self.acks.keep_alive, name="event_bus:nats:keepalive")
        _log.info("event_bus_nats_connected", servers=where, stream=self._settings.stream)

    async def _ensure_stream(self) -> None:
        """Create the stream if it does not exist; an existing one is used as it is."""
        jsm = self._client().jsm()
        name = self._settings.stream
        try:
            info = await jsm.stream_info(name)
        except nats.js.errors.NotFoundError:
            pass
        except nats.js.errors.ServiceUnavailableError as exc:
            raise NatsUnavailable(
                f"NATS at {', '.join(self._servers)} has no JetStream; start nats-server with -js"
            ) from exc
        except _NATS_ERRORS as exc:
            raise NatsUnavailable(
                f"NATS JetStream did not answer about stream {name!r}: {type(exc).__name__}: "
                f"{exc}; is nats-server started with -js?"
            ) from exc
        else:
            if info.config.retention == RetentionPolicy.INTEREST:
                _log.warning(
                    "event_bus_nats_interest_stream",
                    stream=name,
                    hint="events published while nats-server shuts down can be acknowledged "
                    "and lost on an interest stream; delete it to have it created anew",
                )
            return
        config = StreamConfig(
            name=name,
            subjects=[self._subjects.events],
            retention=RetentionPolicy.LIMITS,  # see the module docstring (and trim)
            storage=StorageType.FILE,
            max_age=self._settings.retention,
            duplicate_window=_DUPLICATE_WINDOW,
        )
        try:
            await jsm.add_stream(config)
            return
        except nats.js.errors.BadRequestError as exc:
            refused: Exception = exc
            try:
                await jsm.stream_info(name)  # created meanwhile by another replica
                return
            except _NATS_ERRORS:
                pass
        except _NATS_ERRORS as exc:
            refused = exc
        raise NatsUnavailable(
            f"cannot create JetStream stream {name!r} for subjects {self._subjects.events!r}: "
            f"{refused}; another stream may already hold those subjects (set EVENT_BUS_STREAM)"
        ) from refused

    def _client(self) -> Client:
        if self._nc is None or self._closed:
            raise BusClosed("the NATS event bus backend is not connected")
        return self._nc

    def _start(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> None:
        """Run ``fn`` in the kernel's task group, cancelled by :meth:`close`.

        Nothing cancelled here awaits ``flush``: nats-py leaves a cancelled flush's
        future behind, and the next PONG then breaks its read loop.
        """
        scope = anyio.CancelScope()
        self._scopes.append(scope)

        async def run() -> None:
            with scope:
                await fn(*args)
            self._scopes.remove(scope)

        self._start_background(run, name=name)

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        _log.warning("event_bus_nats_error", error=f"{type(error).__name__}: {error}")

    async def _on_disconnected(self) -> None:
        if self._up.is_set():
            self._up = anyio.Event()
        if not self._closing:
            _log.warning("event_bus_nats_disconnected")

    async def _on_reconnected(self) -> None:
        self._up.set()
        url = self._nc.connected_url if self._nc is not None else None
        _log.info("event_bus_nats_reconnected", server=str(url.netloc if url else ""))

    # -- publishing --

    def publisher(self) -> Publisher:
        self._client()
        return self._publish

    async def _publish(self, event: Event) -> object:
        if self._pending:  # a subscription made here just now must see this event
            await self._bound()
        if not self._accepting():
            self._drain_ids.add(event.id)
        data = encode_event(event)
        dead_letter = event.name.startswith(DLQ_PREFIX)
        try:
            await self._store(self._subjects.event(event.name), data, event)
        except BaseException:
            if dead_letter:
                self.acks.dead_letter_lost(event)
            raise
        if dead_letter:
            self.acks.dead_letter_stored(event)
        return None

    def problem(self) -> str | None:
        """Readiness: the client is connected to a NATS server now."""
        nc = self._nc
        if nc is None or self._closed:
            return "the NATS connection is closed"
        if not nc.is_connected:
            return "NATS is not connected (reconnecting)"
        return None

    async def ready(self) -> None:
        await self._bound()

    async def _bound(self) -> None:
        for binding in tuple(self._pending):
            await binding.ready.wait()

    async def _store(self, subject: str, data: bytes, event: Event) -> None:
        """Publish to JetStream until the stream acknowledges it, within the publish timeout.

        Tries only while connected (see the module docstring): what ``PublishTimeout``
        says was not stored is not stored later from nats-py's reconnect buffer.
        """
        nc = self._client()
        headers = {"Nats-Msg-Id": event.id}
        if event.traceparent is not None:
            headers["traceparent"] = event.traceparent
        limit = self._settings.publish_timeout
        deadline = time.monotonic() + limit
        pause = 0.05
        while True:
            left = deadline - time.monotonic()
            error: BaseException | None = None
            if not nc.is_connected:
                with anyio.move_on_after(left):
                    await self._up.wait()
                left = deadline - time.monotonic()
            if nc.is_connected and left > 0:
                try:
                    await self._jetstream_publish(
                        subject, data, timeout=min(left, 5.0), headers=headers
                    )
                    self._touched()
                    return
                except _RETRYABLE as exc:
                    error = exc
                except nats.errors.ConnectionClosedError as exc:
                    raise BusClosed(
                        f"the NATS connection is closed; {event.name!r} was not published"
                    ) from exc
                except nats.js.errors.APIError as exc:
                    raise NatsUnavailable(
                        f"JetStream refused {event.name!r} (event {event.id}): {exc}"
                    ) from exc
            if self._closed:
                raise BusClosed(f"the NATS event bus closed; {event.name!r} was not published")
            if time.monotonic() + pause >= deadline:
                reason = type(error).__name__ if error is not None else "not connected"
                raise PublishTimeout(
                    f"NATS did not store {event.name!r} (event {event.id}) within {limit} s "
                    f"(EVENT_BUS_PUBLISH_TIMEOUT): {reason}; is NATS up?"
                ) from error
            await anyio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _jetstream_publish(
        self, subject: str, payload: bytes, *, timeout: float, headers: dict[str, str]
    ) -> None:
        """What nats-py's ``js.publish`` does, at about a quarter less CPU per event.

        The same PUB with the same headers, answered by JetStream to this backend's
        inbox (the subscription replies to requests come to): one future and one
        timer per publish, where ``js.publish`` makes a NUID token, a random suffix,
        an ``asyncio.wait_for`` and a ``PubAck`` dataclass out of parsed JSON. Only
        an error is parsed (a stored event's ack is not read). Raises what
        ``js.publish`` raises: ``nats.errors.TimeoutError`` after ``timeout``,
        ``NoStreamResponseError`` when no stream takes the subject, ``APIError``
        subclasses for a refusal.
        """
        nc = self._client()
        loop = asyncio.get_running_loop()
        token = f"s{next(self._tokens)}"
        stored = self._stores[token] = loop.create_future()
        timer = loop.call_later(timeout, _expire, stored)
        try:
            await nc.publish(subject, payload, reply=f"{self._inbox}.{token}", headers=headers)
            ack: Msg = await stored
        finally:
            timer.cancel()
            del self._stores[token]
        if ack.headers and ack.headers.get(_STATUS) == _NO_RESPONDERS:
            raise nats.js.errors.NoStreamResponseError
        if b'"error"' in ack.data:  # an ack is {"stream":...,"seq":...}; parsed only then
            answer = json.loads(ack.data)
            if "error" in answer:
                raise nats.js.errors.APIError.from_error(answer["error"])

    # -- removing what every consumer acked --

    def _touched(self) -> None:
        self._dirty.set()

    async def _trim_loop(self) -> None:
        """Trim after events were published or acked here, at most every ``_TRIM_EVERY``."""
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            try:
                await self.trim()
            except BusClosed:
                return
            except _NATS_ERRORS as exc:  # kept until the next trim; max_age bounds it anyway
                _log.warning("event_bus_nats_trim_failed", error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(_TRIM_EVERY)

    async def trim(self) -> int:
        """Remove the events no consumer needs any more; the first sequence kept.

        A consumer with nothing pending and nothing unacked needs nothing stored up to
        the stream's last sequence read before it; any other one needs what lies
        past its ack floor. A consumer created later starts past the last sequence
        (``DeliverPolicy.NEW``). When consumers came or went while listing them
        (more than one page), nothing is removed this time.
        """
        jsm = self._client().jsm()
        name = self._settings.stream
        before = await jsm.stream_info(name)
        keep = before.state.last_seq + 1
        consumers: list[Any] = []
        while True:
            page = await jsm.consumers_info(name, offset=len(consumers) or None)
            consumers.extend(page)
            if len(page) < _CONSUMERS_PAGE:
                break
        if len(consumers) > _CONSUMERS_PAGE:
            after = await jsm.stream_info(name)
            if not before.state.consumer_count == len(consumers) == after.state.consumer_count:
                return before.state.first_seq
        for info in consumers:
            if info.num_pending or info.num_ack_pending:
                keep = min(keep, info.ack_floor.stream_seq + 1)
        if keep > before.state.first_seq and before.state.messages:
            await jsm.purge_stream(name, seq=keep)
        return keep

    # -- requests --

    @property
    def waiting(self) -> set[RemoteWaiter]:
        """Requests sent from here that wait for replies."""
        return set(self._waiters.values())

    async def request(self, event: Event, timeout: float) -> Any:
        nc = self._client()
        if self._pending:
            await self._bound()
        subject, data = self._subjects.request(event.name), encode_request(event, timeout)
        headers = None if event.traceparent is None else {"traceparent": event.traceparent}
        token = str(next(self._tokens))
        reply = f"{self._inbox}.{token}"
        waiter = self._waiters[token] = RemoteWaiter()
        # one timer for the deadline (see RemoteWaiter): no cancel scope per request
        deadline = asyncio.get_running_loop().call_later(timeout, waiter.expire)
        try:
            await nc.publish(subject, data, reply=reply, headers=headers)
            await waiter.wait()
            while waiter.refused and not waiter.expired:
                # Only replicas leaving the subscription got it (GONE). Once NATS has
                # their UNSUB, the queue group picks a live replica, or NATS answers
                # "no responders" if there is none: ask again until the timeout.
                await waiter.pause(_ASK_AGAIN)
                if waiter.expired:
                    break
                waiter.again()
                await nc.publish(subject, data, reply=reply, headers=headers)
                await waiter.wait()
        finally:
            deadline.cancel()
            del self._waiters[token]
        return waiter.outcome(event, timeout, waiter.expired)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        stored = self._stores.get(token)
        if stored is not None:  # JetStream's answer to a publish
            if not stored.done():
                stored.set_result(msg)
            return
        waiter = self._waiters.get(token)
        if waiter is None:
            return  # the requester stopped waiting
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            waiter.nobody()
            return
        try:
            waiter.received(decode_reply(msg.data))
        except msgspec.DecodeError:
            _log.error("event_bus_nats_bad_reply", subject=msg.subject, size=len(msg.data))

    # -- subscriptions --

    def watch(self, pattern: str, group: str, mode: str = SUBSCRIBE) -> None:
        key = (pattern, group, mode)
        binding = self._bindings.get(key)
        if binding is not None:
            binding.refs += 1
            return
        binding = self._bindings[key] = _Binding(pattern, group, mode)
        self._pending.add(binding)
        self._start(self._bind, binding, name=f"event_bus:nats:bind:{group}:{pattern}")

    def unwatch(self, pattern: str, group: str, mode: str = SUBSCRIBE) -> None:
        binding = self._bindings.get((pattern, group, mode))
        if binding is None:
            return
        binding.refs -= 1
        if binding.refs == 0 and not self._closing:
            left = anyio.Event()
            self._leaving.add(left)
            self._start_background(
                self._unbind, binding, left, name=f"event_bus:nats:unbind:{group}:{pattern}"
            )

    async def _bind(self, binding: _Binding) -> None:
        """Create (or find) the durable consumer and join both queue groups; retry until done."""
        pause = _SETUP_RETRY[0]
        try:
            while binding.refs > 0 and not self._closing:
                try:
                    await self._subscribe(binding)
                    if binding.refs == 0:  # unwatched while joining: leave again
                        self._forget(binding)  # a watch from now on binds afresh
                        await self._leave(binding)
                    return
                except BusClosed:
                    return
                except _NATS_ERRORS as exc:
                    _log.warning(
                        "event_bus_nats_subscribe_failed",
                        subscriber=binding.group,
                        pattern=binding.pattern,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=pause,
                    )
                binding.ready.set()  # publishers do not wait past the first attempt
                self._pending.discard(binding)
                await anyio.sleep(pause)
                pause = min(pause * 2, _SETUP_RETRY[1])
        finally:
            binding.ready.set()
            self._pending.discard(binding)

    async def _subscribe(self, binding: _Binding) -> None:
        nc = self._client()
        if binding.mode == BROADCAST:  # every replica: a plain (not queue) core subscription
            binding.subs = [
                await nc.subscribe(
                    self._subjects.event(binding.pattern),
                    cb=partial(self._on_broadcast, binding),
                    pending_msgs_limit=self._settings.buffer,
                )
            ]
        else:
            await self._join(nc, binding)
        # Joined once NATS has seen the SUBs (other replicas may request at once).
        # Shielded: a cancelled flush breaks nats-py (see _start); it times out by itself.
        try:
            with anyio.CancelScope(shield=True):
                await nc.flush(timeout=_FLUSH_TIMEOUT)
        except _NATS_ERRORS as exc:  # joined all the same: NATS gets the SUBs when it is back
            _log.warning(
                "event_bus_nats_subscribe_unconfirmed",
                subscriber=binding.group,
                pattern=binding.pattern,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _join(self, nc: Client, binding: _Binding) -> None:
        """The plugin's queue groups: requests, and (not for a responder) its durable consumer."""
        requests = await nc.subscribe(
            self._subjects.request(binding.pattern),
            queue=binding.group,
            cb=partial(self._on_request, binding),
        )
        if binding.mode == RESPOND:
            binding.subs = [requests]
            return
        jsm = nc.jsm()
        stream = self._settings.stream
        durable = self._subjects.durable(binding.group, binding.pattern)
        deliver = self._subjects.deliver(durable)
        config = ConsumerConfig(
            durable_name=durable,
            description=f"{binding.group} subscribed to {binding.pattern!r}",
            deliver_subject=deliver,
            deliver_group=binding.group,
            deliver_policy=DeliverPolicy.NEW,
            filter_subject=self._subjects.event(binding.pattern),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._settings.ack_wait,
            max_ack_pending=self._settings.buffer,
            inactive_threshold=self._settings.retention,
        )
        try:
            await jsm.add_consumer(stream, config)
        except nats.js.errors.BadRequestError:
            # exists with other settings (e.g. EVENT_BUS_ACK_WAIT changed): keep it as it is
            info = await jsm.consumer_info(stream, durable)
            deliver = info.config.deliver_subject or deliver
        events = await nc.subscribe(
            deliver, queue=binding.group, cb=partial(self._on_event, binding)
        )
        # Left requests first: a request reaching a leaving replica is answered GONE (and
        # sent again by the requester), so the window for that is kept short.
        binding.subs = [requests, events]

    async def _unbind(self, binding: _Binding, left: anyio.Event) -> None:
        try:
            await binding.ready.wait()
            if binding.refs > 0:
                return  # watched again meanwhile (hot reload)
            self._forget(binding)
            await self._leave(binding)
        finally:
            left.set()
            self._leaving.discard(left)

    def _forget(self, binding: _Binding) -> None:
        """Drop ``binding`` from the table, so a later watch binds afresh (not a leaving one)."""
        key = (binding.pattern, binding.group, binding.mode)
        if self._bindings.get(key) is binding:
            del self._bindings[key]

    async def _leave(self, binding: _Binding) -> None:
        """Leave both queue groups; what NATS already sent here goes back (see _pump).

        Bounded without a cancel scope (see :meth:`_start`): nats-py's drain flushes
        with its own timeout, and the pump it waits for does not block once the
        local subscriptions are closed. :meth:`close` waits for it.
        """
        left = anyio.Event()
        self._leaving.add(left)
        try:
            subs, binding.subs = binding.subs, []
            for sub in subs:
                if self._nc is not None and not self._nc.is_closed:
                    try:
                        await sub.drain()  # type: ignore[no-untyped-call]  # nats-py: unannotated
                    except _NATS_ERRORS as exc:
                        _log.warning(
                            "event_bus_nats_unsubscribe_failed",
                            subscriber=binding.group,
                            pattern=binding.pattern,
                            error=f"{type(exc).__name__}: {exc}",
                        )
            if binding.pumped is not None:
                await binding.pumped.wait()
        finally:
            left.set()
            self._leaving.discard(left)

    # -- what arrives --

    async def _on_event(self, binding: _Binding, msg: Msg) -> None:
        """nats-py's callback: takes the event in hand at once and never waits.

        Handing an event on may wait for room in a full buffer; the events behind it
        wait in the binding's backlog, kept alive (:meth:`Acks.arrived`), not in
        nats-py's queue where JetStream would redeliver them after the ack wait.
        """
        if binding.pumped is None and self._take_now(binding, msg):
            return  # the usual case: no task to start (and nothing to keep alive)
        self.acks.arrived(msg)
        binding.backlog.append(msg)
        if binding.pumped is None:
            pumped = binding.pumped = anyio.Event()
            self._start(self._pump, binding, pumped, name=f"event_bus:nats:events:{binding.group}")

    def _take_now(self, binding: _Binding, msg: Msg) -> bool:
        """Hand ``msg`` on without waiting, when nothing is queued before it and it needs no
        wait: it decodes, is for a subscription here, and fits in their buffers now. False,
        with nothing done, when it must go the long way (:meth:`_pump`)."""
        fanout = self._fanout
        if fanout is None or not self._accepting():
            return False
        try:
            event = decode_event(msg.data)
            targets = binding.targets(fanout, event.name)
            if not targets or not all(_has_room(sub) for sub in targets):
                return False
            if not self.acks.duplicate(event, msg, binding.handled):
                delivery = self.acks.hold(event, len(targets), msg, binding.handled)
                for sub in targets:
                    item = Request(event, self.acks.outcome(delivery, sub))
                    if not offer(fanout, sub, item):  # False: left meanwhile (None: room checked)
                        delivery.report(abandoned=True)
        except msgspec.DecodeError:
            return False  # the long way logs it and terminates the message
        except Exception:  # noqa: BLE001 - isolation boundary: one message must not stop the rest
            _log.exception(
                "event_bus_nats_receive_failed", subscriber=binding.group, subject=msg.subject
            )  # left unacked: JetStream offers it again after EVENT_BUS_ACK_WAIT
        return True

    async def _pump(self, binding: _Binding, pumped: anyio.Event) -> None:
        """Hand the binding's backlog on, in arrival order, one event at a time."""
        backlog = binding.backlog
        try:
            while backlog:
                await self._take_event(binding, backlog.popleft())
        finally:
            binding.pumped = None
            pumped.set()

    async def _take_event(self, binding: _Binding, msg: Msg) -> None:
        try:
            await self._receive_event(binding, msg)
        except Exception:  # noqa: BLE001 - isolation boundary: one message must not stop the rest
            _log.exception(
                "event_bus_nats_receive_failed", subscriber=binding.group, subject=msg.subject
            )  # left unacked: JetStream offers it again after EVENT_BUS_ACK_WAIT
        finally:
            self.acks.taken(msg)

    async def _receive_event(self, binding: _Binding, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except msgspec.DecodeError:
            _log.error("event_bus_nats_bad_event", subject=msg.subject, size=len(msg.data))
            await msg.term()  # never decodable: redelivering it would loop
            return
        fanout = self._fanout
        if fanout is None:  # pragma: no cover - subscribed only after open
            return
        if not self._accepting() and event.id not in self._drain_ids:
            await msg.nak(delay=_REFUSED_DELAY)  # shutting down: another replica takes it
            return
        targets = binding.targets(fanout, event.name)
        if not targets:
            await msg.nak(delay=_ELSEWHERE_DELAY)  # just unsubscribed here
            return
        if self.acks.duplicate(event, msg, binding.handled):
            return
        delivery = self.acks.hold(event, len(targets), msg, binding.handled)
        for sub in targets:
            try:
                queued = await queue_to(
                    fanout, sub, Request(event, self.acks.outcome(delivery, sub))
                )
            except PublishTimeout:
                _log.warning(
                    "event_bus_nats_buffer_full",
                    subscriber=sub.identity,
                    pattern=sub.pattern,
                    event_id=event.id,
                )
                queued = False
            if not queued:
                delivery.report(abandoned=True)

    async def _on_broadcast(self, binding: _Binding, msg: Msg) -> None:
        """A broadcast event (core NATS, every replica, no acks): hand it on in order.

        nats-py holds at most ``EVENT_BUS_BUFFER`` of them for this subscription
        (``pending_msgs_limit``); past that it drops them (a slow consumer, logged by
        nats-py's error callback), and so does this backlog: broadcast delivery is at
        most once, live only.
        """
        if len(binding.backlog) >= self._settings.buffer:
            _log.warning("event_bus_nats_broadcast_dropped", subscriber=binding.group)
            return
        binding.backlog.append(msg)
        if binding.pumped is None:
            pumped = binding.pumped = anyio.Event()
            self._start(
                self._pump_broadcast, binding, pumped, name=f"event_bus:nats:live:{binding.group}"
            )

    async def _pump_broadcast(self, binding: _Binding, pumped: anyio.Event) -> None:
        backlog = binding.backlog
        try:
            while backlog:
                msg = backlog.popleft()
                try:
                    event = decode_event(msg.data)
                except msgspec.DecodeError:
                    _log.error("event_bus_nats_bad_event", subject=msg.subject, size=len(msg.data))
                    continue
                fanout = self._fanout
                for sub in [] if fanout is None else binding.targets(fanout, event.name):
                    try:
                        await queue_to(fanout, sub, event)  # type: ignore[arg-type]
                    except PublishTimeout:
                        _log.warning(
                            "event_bus_nats_broadcast_dropped",
                            subscriber=sub.identity,
                            pattern=sub.pattern,
                            event_id=event.id,
                        )
        finally:
            binding.pumped = None
            pumped.set()

    async def _on_request(self, binding: _Binding, msg: Msg) -> None:
        try:
            await self._receive_request(binding, msg)
        except Exception:  # noqa: BLE001 - isolation boundary: one message must not stop the rest
            _log.exception(
                "event_bus_nats_receive_failed", subscriber=binding.group, subject=msg.subject
            )  # the requester times out

    async def _receive_request(self, binding: _Binding, msg: Msg) -> None:
        if not msg.reply:
            return
        nc = self._client()
        try:
            frame = decode_request(msg.data)
        except msgspec.DecodeError:
            _log.error("event_bus_nats_bad_request", subject=msg.subject, size=len(msg.data))
            return
        fanout = self._fanout
        targets = [] if fanout is None else binding.targets(fanout, frame.event.name)
        if fanout is None or not targets:
            await nc.publish(msg.reply, encode_reply(GONE, binding.group))
            return
        for sub in targets:
            item = Request(frame.event, RemoteReply(msg.reply, frame.timeout, self._answers.post))
            queued = offer(fanout, sub, item)
            # claimed after the offer: the consumer is woken first, and a value it posts in
            # this loop turn replaces the claim (see Answers)
            self._answers.claim(msg.reply, sub.identity)
            if queued is None:  # a full buffer: wait for room without holding up the
                # requests behind this one (they must be claimed at once, see RemoteWaiter)
                self._start_background(
                    self._queue_request, fanout, sub, item, name=f"event_bus:nats:request:{sub}"
                )
            elif not queued:
                _gone(sub, item)

    async def _queue_request(self, fanout: Fanout, sub: Subscription, item: Request) -> None:
        try:
            queued = await queue_to(fanout, sub, item)
        except PublishTimeout as exc:
            item.reply.fail(exc, sub.identity)
            return
        if not queued:
            _gone(sub, item)

    # -- closing --

    async def close(self) -> None:
        """Leave every queue group (what was sent here goes back), send acks, drain, close."""
        if self._closing or self._nc is None:
            return
        self._closing = True
        nc = self._nc
        with anyio.CancelScope(shield=True):
            for left in tuple(self._leaving):
                await left.wait()
            for binding in list(self._bindings.values()):
                binding.refs = 0
                await self._leave(binding)
            self._bindings.clear()
            await self._answers.flush(nc.publish)
            await self._outbox.flush()
            self._closed = True
            for scope in self._scopes:
                scope.cancel()
            # drain is bounded by EVENT_BUS_DRAIN_TIMEOUT (drain_timeout at connect); close
            # what it did not (NATS unreachable: both may fail, the transport being gone)
            for step in (nc.drain, nc.close):
                if nc.is_closed:
                    break
                try:
                    await step()
                except _NATS_ERRORS as exc:
                    _log.warning(
                        "event_bus_nats_close_failed", error=f"{type(exc).__name__}: {exc}"
                    )
        self._drain_ids.clear()
        _log.info("event_bus_nats_closed", stream=self._settings.stream)


def _has_room(sub: Subscription) -> bool:
    """Whether an item for ``sub`` is queued without waiting (or ``sub`` is gone: no wait)."""
    send = sub.send
    if send is None:
        return True
    stats = send.statistics()
    return stats.current_buffer_used < stats.max_buffer_size  # a waiting consumer: empty


def _expire(stored: asyncio.Future[Msg]) -> None:
    if not stored.done():
        stored.set_exception(nats.errors.TimeoutError())


def _gone(sub: Subscription, item: Request) -> None:
    item.reply.fail(BusClosed(f"{sub.identity!r} stopped before handling it"), sub.identity)
