"""One OpenTelemetry span per database statement, when tracing is on.

The db tool wraps its backend in :class:`TracedBackend` at set-up only when
``TRACING.enabled``, so an untraced app pays nothing. A span is named after the
statement's operation (``SELECT``, ``INSERT``...) and carries the statement text with its
``?`` placeholders, never the parameter values (OpenTelemetry database conventions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from microcore.tooling import TRACING

from ._backend import DatabaseBackend, Params, Row, Session

__all__ = ("TracedBackend",)


class _Traced:
    """Statements of the wrapped backend or session, each in its own ``client`` span."""

    def __init__(self, inner: Any, dialect: str) -> None:
        self._inner = inner
        self._system = dialect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _span(self, sql: str) -> Any:
        operation = (sql.split(None, 1) or ["SQL"])[0].upper()
        return TRACING.span(
            operation,
            kind="client",
            attributes={
                "db.system.name": self._system,
                "db.operation.name": operation,
                "db.query.text": sql,
            },
        )

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]:
        with self._span(sql):
            rows: list[Row] = await self._inner.query(sql, params, one=one)
            return rows

    async def execute(self, sql: str, params: Params) -> int:
        with self._span(sql):
            done: int = await self._inner.execute(sql, params)
            return done

    async def execute_many(self, sql: str, rows: list[Params]) -> int:
        with self._span(sql):
            done: int = await self._inner.execute_many(sql, rows)
            return done


class TracedBackend(_Traced):
    """A :class:`DatabaseBackend` whose statements, and its sessions' statements, are spans."""

    def __init__(self, inner: DatabaseBackend) -> None:
        super().__init__(inner, inner.dialect)

    def session(self) -> AbstractAsyncContextManager[Session]:
        return self._session()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Session]:
        async with self._inner.session() as session:
            traced: Any = _Traced(session, self._system)
            yield traced
