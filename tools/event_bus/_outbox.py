"""Transactional outbox: ``publish(name, payload, transaction=tx)`` commits with ``tx``.

Inside ``async with db.transaction() as tx``, a publish with ``transaction=tx``
does not touch the bus: it writes the event (its id, causality and payload fixed
now) into the db tool's outbox table in ``tx``. A rolled-back transaction
publishes nothing; a committed one is relayed to the bus after the commit:

* at once, by this process (``tx.after_commit`` hands the event to the
  :class:`Relay` task; the row is leased to this process for
  ``EVENT_BUS_OUTBOX_LEASE`` seconds so no other replica relays it meanwhile);
* when the bus refuses it (NATS down, a buffer full past its wait), again and
  again with backoff (0.1 s doubling to 5 s) until the bus accepts it; the row
  waits in the table, so the caller's answer depends only on the commit;
* after a crash (committed, not relayed): by whichever replica sweeps first once
  the row's lease ran out, or by this app at its next boot. Replicas claim rows
  safely (PostgreSQL: ``FOR UPDATE SKIP LOCKED``).

A relayed event is deleted from the table. Delivery is at least once and
deduplicated by the event id: over NATS the id is the ``Nats-Msg-Id`` (a
relayed-twice event is stored once) and each consumer skips ids it handled
lately; in process the relay remembers what it relayed and, for a delivery cut
short by a full buffer, which subscriptions already have it.

The seam with the db tool is :class:`OutboxStore` (``DbTool.outbox`` satisfies
it): the bus never imports the db tool's modules, and runs without a db tool
(``transaction=`` then raises :class:`OutboxUnavailable`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import msgspec
import structlog

from microcore import Event
from microcore.tooling import TRACING, ConfigurationError, MicroCoreError
from tools.config import Config

from .memory import MemoryBackend

if TYPE_CHECKING:
    from tools.db import Transaction

    from ._backend import EventBackend
    from ._fanout import Fanout, Subscription

__all__ = ("OutboxStore", "OutboxUnavailable", "Relay", "outbox_lease")

_log = structlog.get_logger("microcore.event_bus", tool="event_bus")

_BATCH = 100  # rows claimed per sweep
_POLL = 1.0  # s between sweeps for rows whose lease ran out (a crash's, a failed relay's)
_DELETE_EVERY = 0.05  # s: relayed rows are deleted in batches, at least this often
_BACKOFF = (0.1, 5.0)  # s: first and longest delay before a refused event is tried again
_READY = 10_000  # committed events waiting in memory; past it they wait for a sweep
_REMEMBERED = 10_000  # relayed event ids remembered (a row whose delete failed is not resent)

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Event).decode


class OutboxUnavailable(MicroCoreError):
    """``publish(..., transaction=tx)`` without a working outbox (no db tool, or it failed)."""

    code = "outbox_unavailable"
    http_status = 503


class StoredMessage(Protocol):
    """A row of the outbox, as :meth:`OutboxStore.claim` returns it."""

    @property
    def id(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def attempts(self) -> int: ...


@runtime_checkable
class OutboxStore(Protocol):
    """The outbox table a database tool keeps for the bus (``tools.db.Outbox``)."""

    async def open(self) -> None: ...

    async def put(
        self, tx: Transaction, *, id: str, topic: str, body: bytes, lease: float
    ) -> None: ...

    async def claim(self, *, limit: int, lease: float) -> Sequence[StoredMessage]: ...

    async def delete(self, ids: Sequence[str]) -> None: ...

    async def release(self, ids: Sequence[str], *, delay: float) -> None: ...

    async def depth(self) -> int: ...


class Bus(Protocol):
    """What the relay needs of the bus (``_router.Router``)."""

    backend: EventBackend
    fanout: Fanout

    def make(
        self, name: str, payload: Any, source: str, traceparent: str | None = None
    ) -> Event: ...

    def note(self, event: Event) -> None: ...


def outbox_lease(config: Config) -> float:
    """``EVENT_BUS_OUTBOX_LEASE`` (10 s): how long a committed event is this replica's to
    relay before any replica may (also how soon a crash's leftovers are relayed)."""
    lease = config.get_float("EVENT_BUS_OUTBOX_LEASE", 10.0)
    if lease <= 0:
        raise ConfigurationError(f"EVENT_BUS_OUTBOX_LEASE must be greater than 0, got {lease}")
    return lease


class Relay:
    """Writes events into the outbox in a transaction and relays them to the bus after commit."""

    def __init__(self, store: OutboxStore, router: Bus, *, lease: float) -> None:
        self.store = store
        self._router = router
        self._lease = lease
        self._attempt = lease / 2  # longest relay attempt: well inside the row's lease
        self._ready: deque[Event] = deque()  # committed here, to relay now
        self._wake = anyio.Event()
        self._relayed: dict[str, None] = {}  # ids relayed lately (oldest first)
        self._delete: list[str] = []  # relayed, not deleted yet
        self._partial: dict[str, set[Subscription]] = {}  # in process: subscriptions that have it
        self._failing = False
        self._closed = False
        self.running = False  # the relay task was started

    # -- the publisher's side ----------------------------------------------------------

    async def put(self, tx: Transaction, name: str, payload: Any, source: str) -> str:
        """Write the event in ``tx``; relayed once ``tx`` commits. Its id."""
        # traced: the delivery links to the request that wrote it, however late it runs
        traceparent = TRACING.traceparent() if TRACING.enabled else None
        event = self._router.make(name, payload, source, traceparent)
        await self.store.put(
            tx, id=event.id, topic=event.name, body=_encode(event), lease=self._lease
        )
        tx.after_commit(lambda: self._committed(event))
        return event.id

    def _committed(self, event: Event) -> None:
        if len(self._ready) < _READY:  # else its lease runs out and a sweep relays it
            self._ready.append(event)
        self._wake.set()

    # -- the relay task ------------------------------------------------------------------

    async def run(self) -> None:
        """Relay what commits here as it commits; sweep the table for due rows every
        ``_POLL`` s; delete relayed rows in batches (``_DELETE_EVERY``). Until closed."""
        sweep_at = deleted_at = 0.0
        while not self._closed:
            now = anyio.current_time()
            due = min(deleted_at + _DELETE_EVERY, sweep_at) if self._delete else sweep_at
            with anyio.move_on_after(max(0.0, due - now)):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self._relay_ready()
            now = anyio.current_time()
            if now >= sweep_at:
                sweep_at = now + _POLL
                if await self._sweep():
                    sweep_at = now  # a full batch: more may be due
            if len(self._delete) >= _BATCH or now >= deleted_at + _DELETE_EVERY:
                deleted_at = now  # one DELETE for many rows: it competes for the writer
                await self._forget_relayed()

    async def relay_once(self) -> None:
        """One pass: the events committed here, the due rows of the table, the deletes."""
        self._wake = anyio.Event()
        await self._relay_ready()
        await self._sweep()
        await self._forget_relayed()

    async def close(self, timeout: float) -> None:
        """Shutdown: relay what committed here, within ``timeout``; the rest waits in the
        table for the next boot (or another replica)."""
        self._closed = True
        self._wake.set()
        with anyio.move_on_after(timeout):
            await self._relay_ready()
            await self._forget_relayed()

    async def _relay_ready(self) -> None:
        ready = self._ready
        while ready:
            event = ready.popleft()
            if not await self._relay(event):
                waiting = [event.id, *(e.id for e in ready)]
                ready.clear()
                await self._release(waiting, attempts=0)
                return

    async def _sweep(self) -> bool:
        """Relay the due rows of the table (a batch); True when the batch was full."""
        try:
            rows = await self.store.claim(limit=_BATCH, lease=self._lease)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: the db may be down; next poll
            self._trouble("outbox_claim_failed", exc)
            return False
        for index, row in enumerate(rows):
            if row.id in self._relayed:  # relayed, its delete failed: do not send it again
                self._delete.append(row.id)
                continue
            if not await self._relay(_decode(row.body)):
                await self._release([r.id for r in rows[index:]], attempts=row.attempts)
                return False
        return len(rows) == _BATCH

    async def _relay(self, event: Event) -> bool:
        """Hand ``event`` to the bus; False when the bus refused it (logged)."""
        try:
            with anyio.fail_after(self._attempt):
                await self._send(event)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: retried with backoff
            self._trouble("outbox_relay_failed", exc, event_id=event.id, event_name=event.name)
            return False
        if self._failing:
            self._failing = False
            _log.info("outbox_relay_recovered", event_id=event.id)
        self._partial.pop(event.id, None)
        relayed = self._relayed
        relayed[event.id] = None
        if len(relayed) > _REMEMBERED:
            del relayed[next(iter(relayed))]
        self._delete.append(event.id)
        self._router.note(event)
        return True

    async def _send(self, event: Event) -> None:
        router = self._router
        if not isinstance(router.backend, MemoryBackend):
            await router.backend.publisher()(event)  # NATS: Nats-Msg-Id deduplicates
            return
        # In process: queue it for each subscription that does not have it yet, so a
        # retry after a full buffer gave up does not hand it twice to the others.
        if event.id not in self._partial and len(self._partial) >= _REMEMBERED:
            del self._partial[next(iter(self._partial))]
        await router.fanout.dispatch(event, done=self._partial.setdefault(event.id, set()))

    async def _release(self, ids: list[str], *, attempts: int) -> None:
        delay = min(_BACKOFF[0] * 2**attempts, _BACKOFF[1])
        try:
            await self.store.release(ids, delay=delay)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: their lease runs out
            self._trouble("outbox_release_failed", exc)

    async def _forget_relayed(self) -> None:
        if not self._delete:
            return
        ids, self._delete = self._delete, []
        try:
            await self.store.delete(ids)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: deleted next pass
            self._trouble("outbox_delete_failed", exc)
            if len(ids) <= _REMEMBERED:
                self._delete = ids + self._delete  # else a sweep finds them in _relayed

    def _trouble(self, what: str, exc: Exception, **fields: Any) -> None:
        """Log the first of a series of failures as a warning, the rest at debug."""
        log = _log.debug if self._failing else _log.warning
        self._failing = True
        log(what, error=f"{type(exc).__name__}: {exc}", **fields)
