"""Transactions: one connection held exclusively, committed on success, rolled back on any
exception (cancellation included), nested through savepoints.

The open transaction is remembered in a context variable of the task that opened it,
so ``db.execute(...)`` (and a nested ``db.transaction()``) inside the block join it
instead of waiting for the connection the block itself holds.

Savepoints nest strictly: a nested block opens inside the innermost open one only.
Two tasks of one transaction opening overlapping nested blocks would release or
roll back each other's savepoints, so the second is refused with a clear error.
When a savepoint cannot be rolled back, or the database itself ended the
transaction after an error, the outermost block raises instead of committing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, suppress
from contextvars import ContextVar, Token
from types import TracebackType

import anyio
import structlog

from ._backend import DatabaseBackend, Params, Row, Session, check_params
from ._errors import OperationalError, ProgrammingError
from ._sql import first_line

__all__ = ("Transaction", "TransactionScope")

_log = structlog.get_logger("microcore.db", tool="db")


class Transaction:
    """The ``db`` methods, on the one connection held until the block ends.

    >>> async with self.db.transaction() as tx:
    ...     order_id = await tx.execute("INSERT INTO orders (total) VALUES (?)", (total,))
    ...     await tx.execute_many("INSERT INTO lines (order_id, sku) VALUES (?, ?)",
    ...                           [(order_id, sku) for sku in skus])
    ...     async with tx.transaction() as inner:    # a savepoint: rolls back alone
    ...         await inner.execute("UPDATE stock SET n = n - 1 WHERE sku = ?", (sku,))
    """

    def __init__(self, session: Session, *, depth: int = 0, root: _Root | None = None) -> None:
        self._session = session
        self._depth = depth
        self._root = root or _Root(self)
        self._open = True
        self._after: list[Callable[[], object]] = []  # after_commit callbacks of this block

    @property
    def open(self) -> bool:
        """Whether the block is still running (statements are accepted)."""
        return self._open

    def _check(self, sql: str) -> None:
        if not self._open:
            raise ProgrammingError(
                "this transaction has ended; use it only inside its 'async with' block",
                statement=first_line(sql),
            )

    async def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row the statement returns, each a dict keyed by column name.

        >>> await tx.query("SELECT id FROM lines WHERE order_id = ?", (order_id,))
        [{'id': 3}, {'id': 4}]
        """
        self._check(sql)
        return await self._session.query(sql, check_params(params, sql), one=False)

    async def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row the statement returns, or ``None``.

        >>> await tx.query_one("SELECT balance FROM accounts WHERE id = ?", (a,))
        {'balance': 95}
        """
        self._check(sql)
        rows = await self._session.query(sql, check_params(params, sql), one=True)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement: the new row id for an INSERT, else the number of rows affected.

        >>> await tx.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (5, a))
        1
        """
        self._check(sql)
        return await self._session.execute(sql, check_params(params, sql))

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement for every parameter row; the total number of rows affected.

        >>> await tx.execute_many("INSERT INTO lines (order_id, sku) VALUES (?, ?)", rows)
        2
        """
        self._check(sql)
        return await self._session.execute_many(sql, [check_params(r, sql) for r in rows])

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the outermost transaction has committed; never if it
        rolls back (nor if this nested block rolls back alone).

        Callbacks run in the order they were added, after the connection is released, in
        the task that ends the outermost block; they must not block (start work, wake a
        task). One that raises is logged; the commit stands and the others still run.
        ``event_bus.publish(..., transaction=tx)`` relays its event this way.

        >>> tx.after_commit(lambda: self.cache.pop(product_id, None))
        """
        self._check("after_commit")
        self._after.append(callback)

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A nested transaction (a savepoint): its failure rolls back only its own work.

        >>> async with tx.transaction() as inner:
        ...     await inner.execute("INSERT INTO tags (name) VALUES (?)", (name,))
        """
        return TransactionScope(parent=self)

    def _child(self) -> tuple[Transaction, str]:
        root = self._root
        if root.stack[-1] is not self:
            raise ProgrammingError(
                "a nested db.transaction() is already open in this transaction (in another "
                "task); nested blocks of one transaction cannot overlap. Run them one after "
                "the other, or give each task its own transaction",
                statement="SAVEPOINT",
            )
        root.savepoints += 1
        child = Transaction(self._session, depth=self._depth + 1, root=root)
        root.stack.append(child)
        return child, f"microcore_sp_{root.savepoints}"


class _Root:
    """What one outermost transaction shares with its nested blocks."""

    __slots__ = ("broken", "savepoints", "stack")

    def __init__(self, tx: Transaction) -> None:
        self.savepoints = 0  # savepoint names unique within the transaction
        self.stack = [tx]  # open blocks, outermost first
        self.broken: str | None = None  # why the transaction can no longer commit


class TransactionScope(AbstractAsyncContextManager[Transaction]):
    """``async with`` one transaction: a new one on the backend, or a savepoint in ``parent``."""

    def __init__(
        self,
        *,
        backend: DatabaseBackend | None = None,
        current: ContextVar[Transaction | None] | None = None,
        parent: Transaction | None = None,
    ) -> None:
        self._backend = backend
        self._current = current
        self._parent = parent
        self._lease: AbstractAsyncContextManager[Session] | None = None
        self._tx: Transaction | None = None
        self._outer: Transaction | None = None  # the block a savepoint opened in
        self._savepoint: str | None = None
        self._token: Token[Transaction | None] | None = None

    async def __aenter__(self) -> Transaction:
        parent = self._parent
        if parent is None and self._current is not None:
            joined = self._current.get()
            parent = joined if joined is not None and joined.open else None
        if parent is not None:
            parent._check("SAVEPOINT")
            tx, name = parent._child()
            await tx._session.savepoint(name)
            self._savepoint = name
            self._outer = parent
        else:
            if self._backend is None:
                raise RuntimeError("a root transaction scope needs a backend")
            self._lease = self._backend.session()
            session = await self._lease.__aenter__()
            try:
                await session.begin()
            except BaseException as exc:
                await self._lease.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            tx = Transaction(session)
        self._tx = tx
        if self._current is not None:
            self._token = self._current.set(tx)
        return tx

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx = self._tx
        if tx is None:
            return
        committed = False
        try:
            # Shielded: a cancelled block must still roll back, and a commit that was sent
            # must be waited for, or the caller could not know whether it happened.
            with anyio.CancelScope(shield=True):
                committed = await self._finish(tx, failed=exc_type is not None)
        finally:
            tx._open = False
            if tx._root.stack[-1] is tx:
                tx._root.stack.pop()
            if self._token is not None and self._current is not None:
                with suppress(ValueError):  # left in another context than entered: the
                    self._current.reset(self._token)  # entering one holds a closed tx, ignored
            if self._lease is not None:
                await self._lease.__aexit__(exc_type, exc, tb)
        if committed and tx._after:
            if self._outer is not None:  # a released savepoint: its work is the outer block's
                self._outer._after.extend(tx._after)
            else:
                _run_after_commit(tx._after)

    async def _finish(self, tx: Transaction, *, failed: bool) -> bool:
        """End ``tx``: True when its work stands (committed, or a savepoint released)."""
        session, name, root = tx._session, self._savepoint, tx._root
        broken = root.broken or session.aborted
        if not failed:
            if broken is not None and name is None:
                await self._undo(tx, name, during="commit")
                raise OperationalError(
                    f"the transaction was rolled back, not committed: {broken}",
                    statement="COMMIT",
                )
            try:
                if name is None:
                    await session.commit()
                else:
                    await session.release_savepoint(name)
                return True
            except BaseException:
                await self._undo(tx, name, during="commit")
                raise
        await self._undo(tx, name, during="exception")
        return False

    async def _undo(self, tx: Transaction, name: str | None, *, during: str) -> None:
        session = tx._session
        if name is not None and session.aborted is not None:
            return  # the database already rolled the whole transaction back
        try:
            if name is None:
                await session.rollback()
            else:
                await session.rollback_to_savepoint(name)
                await session.release_savepoint(name)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            _log.exception("db_rollback_failed", savepoint=name, during=during)
            # a nested block's work may still be in the transaction: it must not commit
            tx._root.broken = f"a nested block could not be rolled back ({exc})"

    def __repr__(self) -> str:
        kind = "savepoint" if self._parent is not None else "transaction"
        return f"<TransactionScope {kind}>"


def _run_after_commit(callbacks: list[Callable[[], object]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - isolation boundary: the commit stands, others run
            _log.exception("db_after_commit_failed", callback=repr(callback))
