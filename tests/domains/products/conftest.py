"""Mocks for the products plugins' unit tests: a ``db`` whose transaction yields ``tx``."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

import pytest


@pytest.fixture
def tx() -> AsyncMock:
    """The transaction ``async with db.transaction() as tx`` yields (``tx.execute`` etc.)."""
    return AsyncMock()


@pytest.fixture
def db(tx: AsyncMock) -> AsyncMock:
    """A mock ``db``: ``db.transaction()`` is an ``async with`` block that yields ``tx``."""
    database = AsyncMock()
    database.transaction = MagicMock(return_value=tx)
    tx.__aenter__.return_value = tx
    return database
