"""What happened on the bus: recent events (with their causal parents) and who talks to whom."""

from __future__ import annotations

from collections import deque

from microcore import Event

__all__ = ("Graph", "History")

_NAMES_PER_PUBLISHER = 1_000  # bounds memory when a plugin publishes ever-new names


class History:
    """A bounded ring of the most recent events, oldest first.

    Every event keeps ``parent_id`` (the event whose handler published it) and
    ``correlation_id``, so a causal chain can be rebuilt while its events are
    still in the ring.
    """

    def __init__(self, size: int) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self.append = self._events.append

    def __len__(self) -> int:
        return len(self._events)

    def events(self, *, correlation_id: str | None = None, limit: int | None = None) -> list[Event]:
        """Recent events, oldest first; only one correlation's when given; the last ``limit``."""
        found = [
            e for e in self._events if correlation_id is None or e.correlation_id == correlation_id
        ]
        return found if limit is None else found[-limit:] if limit > 0 else []

    def chain(self, event_id: str) -> list[Event]:
        """``event_id``'s ancestry, root first, as far as the ring still remembers it."""
        by_id = {e.id: e for e in self._events}
        chain: list[Event] = []
        current = by_id.get(event_id)
        while current is not None and len(chain) < len(by_id):
            chain.append(current)
            current = by_id.get(current.parent_id) if current.parent_id else None
        chain.reverse()
        return chain


class Graph:
    """Who published which names and who answered which requests (for ``/system/graph``)."""

    def __init__(self) -> None:
        self._published: dict[str, set[str]] = {}
        self._responded: dict[str, set[str]] = {}

    def published_by(self, source: str) -> set[str]:
        """The live set of names ``source`` published; callers add to it (see :meth:`note`)."""
        return self._published.setdefault(source, set())

    @staticmethod
    def note(names: set[str], name: str) -> None:
        if len(names) < _NAMES_PER_PUBLISHER:
            names.add(name)

    def responded(self, name: str, responder: str) -> None:
        self._responded.setdefault(name, set()).add(responder)

    def publishers(self) -> dict[str, list[str]]:
        """Event name -> sorted identities that published it."""
        return _invert(self._published)

    def responders(self) -> dict[str, list[str]]:
        """Request name -> sorted identities that answered it."""
        return {name: sorted(who) for name, who in sorted(self._responded.items())}


def _invert(by_source: dict[str, set[str]]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for source, names in by_source.items():
        for name in names:
            out.setdefault(name, set()).add(source)
    return {name: sorted(who) for name, who in sorted(out.items())}
