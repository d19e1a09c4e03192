"""Who registered what: every route, stream, mount and middleware with its owner.

The registry refuses collisions when a registration is made (so the plugin
that registers second fails, naming both) and builds the :class:`Snapshot`
the app serves from the registrations whose owner is active.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microcore.tooling import Owner, Registration, RegistrationError

from ._endpoint import Endpoint
from ._routing import CompiledPath, RouteTable

__all__ = ("Entry", "Registry", "Snapshot")


class Entry:
    """One registration. ``slot`` is what must be unique (None: any number may coexist)."""

    __slots__ = ("compiled", "kind", "label", "owner", "slot", "target")

    def __init__(
        self,
        kind: str,
        label: str,
        owner: Owner,
        target: Any,
        *,
        compiled: CompiledPath | None = None,
        slot: tuple[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.label = label
        self.owner = owner
        self.target = target
        self.compiled = compiled
        self.slot = slot


class Snapshot:
    """What serves right now: the route table and the middleware chain, both immutable."""

    __slots__ = ("middleware", "table")

    def __init__(self, table: RouteTable, middleware: tuple[Any, ...]) -> None:
        self.table = table
        self.middleware = middleware


class Registry:
    """Every registration, in order; ``on_change`` is told when what serves may have changed."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._entries: list[Entry] = []
        self._on_change = on_change

    def add(self, entry: Entry) -> Registration:
        if entry.slot is not None:
            self._refuse_collision(entry)
        registration = entry.owner.own(entry.kind, entry.label, lambda: self._remove(entry))
        self._entries.append(entry)
        if entry.owner.active:
            self._on_change()
        return registration

    def _remove(self, entry: Entry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._on_change()

    def _refuse_collision(self, entry: Entry) -> None:
        owner = entry.owner
        for other in self._entries:
            if other.slot != entry.slot or other.owner.released:
                continue
            if other.owner is owner:
                raise RegistrationError(
                    f"{_who(owner)} registers {entry.label} twice (already as {other.label}); "
                    "register each method and path once"
                )
            if owner.replaces is not None and other.owner is owner.replaces:
                continue  # the new version of a plugin takes over its old routes on commit
            raise RegistrationError(
                f"{_who(owner)} cannot register {entry.label}: {_who(other.owner)} already "
                f"registered {other.label}; two plugins cannot serve one {_what(entry.kind)}, "
                "change the path or the method of one of them"
            )

    def entries(self, kind: str | None = None) -> list[Entry]:
        return [e for e in self._entries if kind is None or e.kind == kind]

    def snapshot(self) -> Snapshot:
        """A table of the registrations of active owners (a replaced version never serves)."""
        endpoints: list[tuple[CompiledPath, Endpoint]] = []
        websockets: list[tuple[CompiledPath, Any]] = []
        mounts: list[tuple[str, Any]] = []
        middleware: list[Any] = []
        for entry in self._entries:
            if not entry.owner.active:
                continue
            if entry.kind in ("route", "sse") and entry.compiled is not None:
                endpoints.append((entry.compiled, entry.target))
            elif entry.kind == "websocket" and entry.compiled is not None:
                websockets.append((entry.compiled, entry.target))
            elif entry.kind == "static":
                mounts.append((entry.target.prefix, entry.target))
            elif entry.kind == "middleware":
                middleware.append(entry.target)
        return Snapshot(RouteTable(endpoints, websockets, mounts), tuple(middleware))


def _who(owner: Owner) -> str:
    kind = "tool" if owner.identity.startswith("tools.") else "plugin"
    return f"{kind} {owner.identity!r}"


def _what(kind: str) -> str:
    return {"static": "mount path", "websocket": "websocket path"}.get(kind, "method and path")
