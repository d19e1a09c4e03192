"""What plugins use of the ``db`` tool: the database they receive, transactions, rows, errors.

>>> from tools.db import Db, IntegrityError
>>> from tools.http import Conflict
>>>
>>> class CreateProductPlugin(Plugin):
...     def __init__(self, db: Db) -> None:
...         self.db = db
...
...     async def create(self, name: str, price: float) -> int:
...         try:
...             return await self.db.execute(
...                 "INSERT INTO products (name, price) VALUES (?, ?)", (name, price))
...         except IntegrityError as exc:
...             raise Conflict(f"product {name!r} exists") from exc

The tool itself (``DbTool``) lives in ``tools/db/db_tool.py``; the rest are private modules.
``Outbox`` and ``OutboxMessage`` are for tools (``DbTool.outbox``: the table the event bus
stores ``publish(..., transaction=tx)`` events in until they are relayed).
"""

from __future__ import annotations

from ._backend import Params, Row
from ._db import Db
from ._errors import (
    DatabaseError,
    DataError,
    IntegrityError,
    MigrationError,
    OperationalError,
    ProgrammingError,
)
from ._outbox import Outbox, OutboxMessage
from ._transaction import Transaction

__all__ = (
    "DataError",
    "DatabaseError",
    "Db",
    "IntegrityError",
    "MigrationError",
    "OperationalError",
    "Outbox",
    "OutboxMessage",
    "Params",
    "ProgrammingError",
    "Row",
    "Transaction",
)
