"""What a plugin receives as ``db``: statements with ``?`` placeholders, rows as dicts,
transactions. Calls made inside an open ``async with db.transaction()`` block of the
same task join that transaction."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar

from ._backend import DatabaseBackend, Params, Row, check_params
from ._errors import OperationalError
from ._transaction import Transaction, TransactionScope

__all__ = ("Db",)


class Db:
    """The database: SQLite or PostgreSQL (``DATABASE_URL``), ``?`` placeholders on both.

    What a plugin receives when it names ``db`` in its constructor::

        from tools.db import Db, IntegrityError

        class CreateProductPlugin(Plugin):
            def __init__(self, db: Db) -> None:
                self.db = db

            async def create(self, name: str, price: float) -> int:
                return await self.db.execute(
                    "INSERT INTO products (name, price) VALUES (?, ?)", (name, price))

    Every failure is a :class:`~tools.db.DatabaseError`: ``IntegrityError`` (409
    "conflict" over HTTP), ``DataError`` (a parameter the database cannot hold, such as
    an integer past the column's range: 400 "invalid_parameter"), ``ProgrammingError``,
    ``OperationalError``.
    """

    def __init__(self) -> None:
        self._backend: DatabaseBackend | None = None
        self._current: ContextVar[Transaction | None] = ContextVar("db_transaction", default=None)

    def _open_backend(self) -> DatabaseBackend:
        if self._backend is None:
            raise OperationalError("the database is not open (the db tool is not set up)")
        return self._backend

    def _joined(self) -> Transaction | None:
        tx = self._current.get()
        return tx if tx is not None and tx.open else None

    async def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row the statement returns, each a dict keyed by column name.

        >>> await self.db.query("SELECT id, name FROM products WHERE price < ?", (10,))
        [{'id': 1, 'name': 'Pen'}]
        """
        tx = self._joined()
        if tx is not None:
            return await tx.query(sql, params)
        return await self._open_backend().query(sql, check_params(params, sql), one=False)

    async def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row the statement returns, or ``None`` when there is none.

        >>> await self.db.query_one("SELECT * FROM products WHERE id = ?", (7,))
        {'id': 7, 'name': 'Pen', 'price': 2.5}
        """
        tx = self._joined()
        if tx is not None:
            return await tx.query_one(sql, params)
        rows = await self._open_backend().query(sql, check_params(params, sql), one=True)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement: the new row id for an INSERT, else the number of rows affected.

        An INSERT that inserted nothing (``ON CONFLICT DO NOTHING``) answers 0.

        >>> await self.db.execute("INSERT INTO products (name, price) VALUES (?, ?)", ("Pen", 2.5))
        7
        """
        tx = self._joined()
        if tx is not None:
            return await tx.execute(sql, params)
        return await self._open_backend().execute(sql, check_params(params, sql))

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> int:
        """Run the statement once per row of ``rows``, all or none; the rows affected.

        >>> await self.db.execute_many("INSERT INTO tags (name) VALUES (?)", [("a",), ("b",)])
        2
        """
        tx = self._joined()
        if tx is not None:
            return await tx.execute_many(sql, rows)
        return await self._open_backend().execute_many(sql, [check_params(r, sql) for r in rows])

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with db.transaction() as tx:`` commits on success, rolls back on an exception.

        To go on after a failed statement, run it in a nested block and catch outside it.

        ``tx`` has the same methods. Inside the block, ``db`` calls of the same task join
        the transaction and a nested ``db.transaction()`` (or ``tx.transaction()``) is a
        savepoint that rolls back alone. A failed statement outside a nested block fails
        the whole transaction on PostgreSQL: the block then raises instead of committing.
        Nested blocks of one transaction must not overlap across tasks (refused). A
        transaction holds the writer: keep it short, no network calls inside.

        >>> async with self.db.transaction() as tx:
        ...     await tx.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (5, a))
        ...     await tx.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (5, b))
        """
        return TransactionScope(backend=self._open_backend(), current=self._current)
