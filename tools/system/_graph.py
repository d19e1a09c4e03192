"""Who publishes, subscribes, requests and answers what (``/system/graph``).

Two sources, merged: what the bus has seen at run time (its
:class:`~microcore.tooling.EventFlows`: names actually published, active
subscriptions, who answered requests) and
what the plugin sources say (the literal ``publish``/``request`` calls found
by the same static scan that writes AI_CONTEXT.md), so a name shows before
its first event. Each name says which source knows it (``static``, ``seen``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from microcore.events import DLQ_PREFIX, matches
from microcore.tooling import (
    EventFlows,
    PluginRecord,
    PluginStatus,
    find_declarations,
    scan_file,
)

__all__ = ("StaticScan", "build_graph")

Names = dict[str, set[str]]  # name -> identities


class StaticScan:
    """Literal ``publish``/``request`` names per plugin, re-read only when a plugin reloads."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._cache: dict[tuple[str, float | None], tuple[list[str], list[str]]] = {}

    def calls(self, plugins: Mapping[str, PluginRecord]) -> tuple[Names, Names]:
        """(published, requested): name -> plugins, for the plugins that serve now."""
        published: Names = {}
        requested: Names = {}
        fresh: dict[tuple[str, float | None], tuple[list[str], list[str]]] = {}
        for identity, record in plugins.items():
            if record.status != "ok":
                continue
            key = (identity, record.loaded_at)
            found = self._cache.get(key)
            if found is None:
                found = self._scan(identity, record.file)
            fresh[key] = found
            for name in found[0]:
                published.setdefault(name, set()).add(identity)
            for name in found[1]:
                requested.setdefault(name, set()).add(identity)
        self._cache = fresh  # forget unloaded and replaced versions
        for path in find_declarations(self._root):  # plugins in other languages declare theirs
            identity = f"{path.parent.parent.name}.{path.name.split('.', 1)[0]}"
            for call in scan_file(self._root, path).calls:
                if call.kind in ("publish", "request"):
                    sent = published if call.kind == "publish" else requested
                    sent.setdefault(call.name, set()).add(identity)
        return published, requested

    def _scan(self, identity: str, file: Path) -> tuple[list[str], list[str]]:
        cls = identity.split(".", 1)[1]
        scan = scan_file(self._root, file)
        calls = [c for c in scan.calls if c.owner == cls]
        return (
            sorted({c.name for c in calls if c.kind == "publish"}),
            sorted({c.name for c in calls if c.kind == "request"}),
        )


def build_graph(
    *,
    plugins: Mapping[str, PluginStatus],
    static: tuple[Names, Names],
    flows: EventFlows | None,
    counts: Mapping[str, int],
    sent: Mapping[str, set[str]],
) -> dict[str, Any]:
    """Nodes (plugins and other sources), events and requests with their senders and receivers.

    ``flows`` is what the event bus saw (None without one), ``counts`` the events
    published by name since boot, ``sent`` more name -> sources seen at run time
    (dead letters, which the bus publishes itself).
    """
    static_published, requested = static
    flows = flows or EventFlows(publishers={}, subscribers={}, responders={})
    runtime: Names = {n: set(who) for n, who in flows.publishers.items()}
    for name, sources in sent.items():
        runtime.setdefault(name, set()).update(sources)
    subscribed: Names = {p: set(who) for p, who in flows.subscribers.items()}
    answered: Names = {n: set(who) for n, who in flows.responders.items()}

    request_names = set(requested) | set(answered)
    event_names = set(static_published) | {n for n in runtime if n not in request_names}
    known = event_names | request_names
    for pattern in subscribed:  # a subscription nothing is known to send still shows
        if not any(pattern == n or matches(pattern, n) for n in known):
            event_names.add(pattern)

    def receivers(name: str) -> list[dict[str, str]]:
        return sorted(
            (
                {"plugin": who, "pattern": pattern}
                for pattern, identities in subscribed.items()
                if pattern == name or matches(pattern, name)
                for who in identities
            ),
            key=lambda r: (r["plugin"], r["pattern"]),
        )

    events = [
        {
            "name": name,
            "publishers": sorted(static_published.get(name, set()) | runtime.get(name, set())),
            "subscribers": receivers(name),
            "static": name in static_published,
            "seen": name in runtime,
            "published": counts.get(name, 0),
            "failed": name.startswith(DLQ_PREFIX),
        }
        for name in sorted(event_names)
    ]
    requests = [
        {
            "name": name,
            "requesters": sorted(requested.get(name, set()) | runtime.get(name, set())),
            "responders": sorted(
                answered.get(name, set()) | {r["plugin"] for r in receivers(name)}
            ),
            "static": name in requested,
            "seen": name in runtime,
            "published": counts.get(name, 0),
        }
        for name in sorted(request_names)
    ]
    return {"nodes": _nodes(plugins, events, requests), "events": events, "requests": requests}


def _nodes(
    plugins: Mapping[str, PluginStatus],
    events: list[dict[str, Any]],
    requests: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    names: set[str] = set(plugins)
    for event in events:
        names.update(event["publishers"])
        names.update(r["plugin"] for r in event["subscribers"])
    for request in requests:
        names.update(request["requesters"])
        names.update(request["responders"])
    return [
        {
            "id": name,
            "kind": "plugin" if name in plugins else "other",
            "status": plugins[name].status if name in plugins else "ok",
        }
        for name in sorted(names)
    ]
