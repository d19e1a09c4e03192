"""Event names: the one grammar the bus, ``microcore check``, the system tool and tests share.

Names are dot-separated tokens (``product.created``); in a subscription pattern
``*`` matches one token and ``>`` (last only) one or more trailing tokens::

    >>> from microcore.events import matches
    >>> matches("order.>", "order.line.added")
    True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from ._core.errors import EventNameError
from ._core.event import Event
from ._names import DLQ_PREFIX, SubjectTrie, check_name, check_pattern, matches

__all__ = (
    "DLQ_PREFIX",
    "Contract",
    "DeclaresContracts",
    "Event",
    "EventNameError",
    "SubjectTrie",
    "check_name",
    "check_pattern",
    "matches",
)


class Contract(msgspec.Struct, frozen=True, kw_only=True):
    """One handler on the bus with what it declares, as AI_CONTEXT.md and ``check`` show it."""

    kind: str  # "subscription", "broadcast" or "responder"
    pattern: str
    owner: str  # the plugin identity
    retries: int = 0
    payload: Any = None  # T of the handler's ``event: Event[T]``, or None
    reply: Any = None  # a responder's return annotation, or None


@runtime_checkable
class DeclaresContracts(Protocol):
    """A bus that reports its handlers' contracts (the ``event_bus`` tool does)."""

    def contracts(self) -> list[Contract]:
        """Every active handler registration, sorted by pattern and owner."""
        ...
