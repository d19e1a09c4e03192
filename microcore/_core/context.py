"""Causal context shared by tools: which request or event caused the work in progress.

The HTTP tool sets a correlation id per request; the event bus reads it when
publishing and sets it (plus the parent event id) while a handler runs, so
everything caused by one request shares one ``correlation_id``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ("causation", "current_correlation_id", "current_event_id", "new_id")

_correlation_id: ContextVar[str | None] = ContextVar("microcore_correlation_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("microcore_event_id", default=None)


def new_id() -> str:
    """A fresh random id (32 hex characters, 128 random bits; a third of ``uuid4().hex``'s cost)."""
    return os.urandom(16).hex()


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def current_event_id() -> str | None:
    """The id of the event whose handler is running, if any (the parent of what it publishes)."""
    return _event_id.get()


@contextmanager
def causation(correlation_id: str, event_id: str | None = None) -> Iterator[None]:
    """Run a block as caused by ``correlation_id`` (and by event ``event_id``)."""
    token_c = _correlation_id.set(correlation_id)
    token_e = _event_id.set(event_id)
    try:
        yield
    finally:
        _event_id.reset(token_e)
        _correlation_id.reset(token_c)
