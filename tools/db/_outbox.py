"""The outbox table: messages written inside a transaction, relayed by another tool after commit.

The db tool owns the table (``_microcore_outbox``, created like the migration
ledger: ``CREATE TABLE IF NOT EXISTS`` in an exclusive transaction, so replicas
opening it together create it once) and the SQL; what a message means is the
caller's business (the event bus stores encoded events: ``transaction=tx`` in
``publish``). The seam is this class, reached as ``DbTool.outbox``:

* :meth:`Outbox.put` writes a message in the caller's open transaction: it exists
  exactly when that transaction commits. The writer *leases* it at once
  (``available_at`` = now + lease), so it can relay it right after commit
  (:meth:`~tools.db.Transaction.after_commit`) while no other replica takes it.
* :meth:`Outbox.claim` leases the due messages, oldest first: a crash's leftovers
  once their lease ran out, and messages released with a delay after a failed
  relay. On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``, so replicas
  claiming together never take the same row; SQLite serializes writers.
* :meth:`Outbox.delete` once a message was relayed; :meth:`Outbox.release` after a
  failed attempt (due again after a delay); :meth:`Outbox.depth` counts what waits.

Delivery is at least once: a relay that crashes after relaying and before
deleting relays again, so messages carry an id the receiver deduplicates on.
Times are the relaying processes' clocks (``time.time()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec

from ._backend import DatabaseBackend, Params
from ._transaction import Transaction

__all__ = ("OUTBOX", "Outbox", "OutboxMessage")

OUTBOX = "_microcore_outbox"
_CHUNK = 500  # ids per DELETE / UPDATE statement

_CREATE = {
    "sqlite": f"""CREATE TABLE IF NOT EXISTS {OUTBOX} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    available_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
)""",
    "postgresql": f"""CREATE TABLE IF NOT EXISTS {OUTBOX} (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    available_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
)""",
}

_PUT = f"INSERT INTO {OUTBOX} (id, topic, body, created_at, available_at) VALUES (?, ?, ?, ?, ?)"
_CLAIM = """UPDATE {table} SET available_at = ?, attempts = attempts + 1
WHERE seq IN (SELECT seq FROM {table} WHERE available_at <= ? ORDER BY seq LIMIT ?{lock})
RETURNING seq, id, topic, body, attempts"""
_LOCK = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}


class OutboxMessage(msgspec.Struct, frozen=True):
    """One message: ``id`` (unique, what the receiver deduplicates on), ``topic`` (what it
    is, for logs), ``body`` (the caller's encoding), ``attempts`` (relays tried so far)."""

    id: str
    topic: str
    body: bytes
    attempts: int = 0


class Outbox:
    """The outbox table of the db tool, for a tool that relays what transactions wrote.

    >>> await db_tool.outbox.open()
    >>> async with db.transaction() as tx:
    ...     await db_tool.outbox.put(tx, id="e1", topic="product.created", body=b"..", lease=10)
    ...     tx.after_commit(lambda: relay.wake())
    >>> for message in await db_tool.outbox.claim(limit=100, lease=10):
    ...     ...  # relay it, then: await db_tool.outbox.delete([message.id])
    """

    def __init__(self, backend: Callable[[], DatabaseBackend]) -> None:
        self._backend = backend  # the open backend, or OperationalError when the db is not
        self.opened = False

    async def open(self) -> None:
        """Create the table if it does not exist (once, whichever replica comes first)."""
        backend = self._backend()
        async with backend.session() as session:
            await session.begin_exclusive()
            await session.execute(_CREATE[backend.dialect], ())
            await session.commit()
        self.opened = True

    async def put(self, tx: Transaction, *, id: str, topic: str, body: bytes, lease: float) -> None:
        """Write a message in ``tx``: stored if and only if ``tx`` commits, leased to the
        writer for ``lease`` seconds (relay it after commit; past the lease anyone may).
        ``id`` must be unique (a second one is an ``IntegrityError``)."""
        now = time.time()
        await tx.execute(_PUT, (id, topic, body, now, now + lease))

    async def claim(self, *, limit: int, lease: float) -> list[OutboxMessage]:
        """Lease up to ``limit`` due messages for ``lease`` seconds, oldest first."""
        backend = self._backend()
        now = time.time()
        sql = _CLAIM.format(table=OUTBOX, lock=_LOCK[backend.dialect])
        rows = await backend.query(sql, (now + lease, now, limit), one=False)
        rows.sort(key=lambda row: row["seq"])
        return [
            OutboxMessage(row["id"], row["topic"], bytes(row["body"]), row["attempts"])
            for row in rows
        ]

    async def delete(self, ids: Sequence[str]) -> None:
        """Forget relayed messages."""
        for chunk in _chunks(ids):
            marks = ", ".join("?" * len(chunk))
            await self._backend().execute(f"DELETE FROM {OUTBOX} WHERE id IN ({marks})", chunk)

    async def release(self, ids: Sequence[str], *, delay: float) -> None:
        """Make messages due again in ``delay`` seconds (a relay attempt failed)."""
        for chunk in _chunks(ids):
            marks = ", ".join("?" * len(chunk))
            params: Params = (time.time() + delay, *chunk)
            await self._backend().execute(
                f"UPDATE {OUTBOX} SET available_at = ? WHERE id IN ({marks})", params
            )

    async def depth(self) -> int:
        """Messages committed and not relayed yet (by every replica)."""
        row = await self._backend().query(f"SELECT COUNT(*) AS n FROM {OUTBOX}", (), one=True)
        return int(row[0]["n"]) if row else 0


def _chunks(ids: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(ids[i : i + _CHUNK]) for i in range(0, len(ids), _CHUNK)]
