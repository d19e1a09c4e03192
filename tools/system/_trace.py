"""Recent events with their causes: which request or event caused which (``/system/events``).

Every event carries ``correlation_id`` (the request id of the HTTP request that
started it all, or the first event's own id) and ``parent_id`` (the event whose
handler published it). From the bus history this module builds, per event, its
cause and its chain (ancestor ids, root first), and per correlation a *trace*:
the request (when the system tool saw it) and the tree of events under it.

The system tool sees requests one by one only while a live-feed client is
connected (that costs per request); otherwise a root event's cause is its
``origin``: the correlation id, which is the request id of the HTTP request
that published it (as in the ``http_request`` log line and ``x-request-id``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from microcore import Event
from microcore.events import DLQ_PREFIX, matches

__all__ = ("MAX_PAYLOAD", "event_row", "payload_view", "select", "trace_id", "traces")

MAX_PAYLOAD = 4096  # bytes of encoded payload shown; longer ones are cut to a preview
_encode = msgspec.json.Encoder().encode
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def payload_view(payload: Any, *, show: bool) -> Any:
    """The payload as JSON to show: itself (pre-encoded), a preview when long, None when hidden."""
    if not show:
        return None
    try:
        raw = _encode(payload)
    except (TypeError, ValueError, OverflowError) as exc:
        return f"<payload is not JSON: {type(exc).__name__}: {exc}>"
    if len(raw) > MAX_PAYLOAD:
        text = raw[:MAX_PAYLOAD].decode("utf-8", errors="replace")
        return f"{text}... <cut: {len(raw)} bytes>"
    return msgspec.Raw(raw)


def event_row(event: Event, *, payloads: bool) -> dict[str, Any]:
    """One event as the API and the live feed show it."""
    return {
        "id": event.id,
        "name": event.name,
        "source": event.source,
        "correlation_id": event.correlation_id,
        "parent_id": event.parent_id,
        "trace_id": trace_id(event.traceparent),
        "timestamp": event.timestamp,
        "failed": event.name.startswith(DLQ_PREFIX),
        "payload": payload_view(event.payload, show=payloads),
        "payload_hidden": not payloads,
    }


def trace_id(traceparent: str | None) -> str | None:
    """The OpenTelemetry trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-01``)."""
    if traceparent is None:
        return None
    found = _TRACEPARENT.match(traceparent)
    return found.group(1) if found else None


def select(
    history: Sequence[Event],
    *,
    name: str | None = None,
    source: str | None = None,
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> list[Event]:
    """The events of ``history`` that pass every filter given.

    ``name`` is a name or a pattern (``product.*``, ``order.>``); ``event_id``
    keeps that event, its ancestors and its descendants.
    """
    found: Iterable[Event] = history
    if event_id is not None:
        found = _family_of(history, event_id)
    if correlation_id is not None:
        found = [e for e in found if e.correlation_id == correlation_id]
    if source is not None:
        found = [e for e in found if e.source == source]
    if name is not None:
        found = [e for e in found if e.name == name or matches(name, e.name)]
    return list(found)


def _family_of(history: Sequence[Event], event_id: str) -> list[Event]:
    by_id = {e.id: e for e in history}
    if event_id not in by_id:
        return []
    keep = {event_id}
    current = by_id[event_id]
    while current.parent_id and current.parent_id in by_id and current.parent_id not in keep:
        keep.add(current.parent_id)
        current = by_id[current.parent_id]
    descendants = {event_id}
    for event in history:  # oldest first: a child always comes after its parent
        if event.parent_id in descendants:
            descendants.add(event.id)
    keep |= descendants
    return [e for e in history if e.id in keep]


def traces(
    events: Sequence[Event],
    history: Sequence[Event],
    requests: Mapping[str, Mapping[str, Any]],
    *,
    payloads: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for ``events`` (with ``caused_by`` and ``chain``) and one trace per correlation.

    ``history`` is the whole ring (to find ancestors outside the selection),
    ``requests`` the recent requests by request id.
    """
    by_id = {e.id: e for e in history}
    rows: list[dict[str, Any]] = []
    children: dict[str, list[dict[str, Any]]] = {}
    roots: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        row = event_row(event, payloads=payloads)
        row["caused_by"] = _cause(event, by_id, requests)
        row["chain"] = _chain(event, by_id)
        rows.append(row)
    selected = {row["id"] for row in rows}
    for row in rows:
        node = {
            "id": row["id"],
            "name": row["name"],
            "source": row["source"],
            "failed": row["failed"],
            "children": children.setdefault(row["id"], []),
        }
        parent = row["parent_id"]
        if parent in selected:
            children.setdefault(parent, []).append(node)
        else:
            roots.setdefault(row["correlation_id"], []).append(node)
    out = [
        {"correlation_id": cid, "request": requests.get(cid), "events": tree}
        for cid, tree in roots.items()
    ]
    return rows, out


def _cause(
    event: Event, by_id: Mapping[str, Event], requests: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    if event.parent_id:
        parent = by_id.get(event.parent_id)
        return {
            "kind": "event",
            "id": event.parent_id,
            "name": None if parent is None else parent.name,
        }
    request = requests.get(event.correlation_id)
    if request is not None:
        return {"kind": "request", "id": event.correlation_id, **request}
    # the request with this id (its access log line has the same request_id), or a hook or
    # background task when the event was published outside any request
    return {"kind": "origin", "id": event.correlation_id}


def _chain(event: Event, by_id: Mapping[str, Event]) -> list[str]:
    """Ancestor ids, root first, ending with ``event``'s own id."""
    chain = [event.id]
    current = event
    while current.parent_id and len(chain) <= len(by_id):
        chain.append(current.parent_id)
        parent = by_id.get(current.parent_id)
        if parent is None:
            break
        current = parent
    chain.reverse()
    return chain
