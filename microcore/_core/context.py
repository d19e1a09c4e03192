"""Causal context shared by tools: which request or event caused the work in progress.

The HTTP tool sets a correlation id per request; the event bus reads it when
publishing and sets it (plus the parent event id) while a handler runs, so
everything caused by one request shares one ``correlation_id``.
"""

from __future__ import annotations

import os
import random
from contextvars import ContextVar

__all__ = ("causation", "current_correlation_id", "current_event_id", "new_id")

_correlation_id: ContextVar[str | None] = ContextVar("microcore_correlation_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("microcore_event_id", default=None)


# Ids name requests, errors and replicas: they must not repeat, not be secret. A generator
# seeded from the OS once (and again in a forked child, so processes never share a stream)
# makes one in 0.3 us where ``os.urandom`` (a system call per id) takes 0.9 us.
_ids = random.Random()
_bits = _ids.getrandbits
os.register_at_fork(after_in_child=_ids.seed)


def new_id() -> str:
    """A fresh random id: 32 hex characters, 128 bits."""
    return _bits(128).to_bytes(16).hex()


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def current_event_id() -> str | None:
    """The id of the event whose handler is running, if any (the parent of what it publishes)."""
    return _event_id.get()


class causation:  # lower case: used like a function, `with causation(request_id):`
    """Run a block as caused by ``correlation_id`` (and by event ``event_id``).

    A class rather than a ``@contextmanager`` generator: it runs once per request and per
    event delivery, and a plain context manager costs a third as much."""

    __slots__ = ("_correlation", "_event", "_tokens")

    def __init__(self, correlation_id: str, event_id: str | None = None) -> None:
        self._correlation = correlation_id
        self._event = event_id

    def __enter__(self) -> None:
        self._tokens = (_correlation_id.set(self._correlation), _event_id.set(self._event))

    def __exit__(self, *exc_info: object) -> None:
        token_c, token_e = self._tokens
        _event_id.reset(token_e)
        _correlation_id.reset(token_c)
