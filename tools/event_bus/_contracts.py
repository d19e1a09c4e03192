"""Typed event contracts: the payload a handler declares, the reply a responder declares.

A handler annotated ``async def on_placed(self, event: Event[OrderPlaced])``
declares that it accepts ``OrderPlaced``; a responder's return annotation
(``-> Product | None``) declares its reply. The bus converts each payload into
the declared type before the call (:func:`convert`), so a subscriber gets the
same Struct in process and over NATS (where it travelled as msgpack). In
development and tests (``MICROCORE_ENV=development``) ``publish`` and
``request`` also check the payload against the constraints of its own Struct
type and against every local handler's declared type, so a publish that breaks
its contract fails at the publisher (:func:`check`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from microcore import Event

from ._errors import EventPayloadError

__all__ = ("check", "convert", "declared", "event_as", "type_name")


def declared(handler: Callable[..., Any]) -> tuple[Any, Any]:
    """``(payload type, reply type)`` from ``handler``'s annotations; None where undeclared.

    The payload type is ``T`` of a first parameter annotated ``Event[T]`` (a bare
    ``Event`` or ``Event[Any]`` declares nothing); the reply type is the return
    annotation, unless it is missing or ``Any``. Annotations that cannot be
    resolved declare nothing: the handler then gets payloads as published.
    """
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # noqa: BLE001 - an unresolvable annotation declares no contract
        return None, None
    payload: Any = None
    params = [h for k, h in hints.items() if k != "return"]
    if params and typing.get_origin(params[0]) is Event:
        (arg,) = typing.get_args(params[0])
        payload = None if arg is Any else arg
    reply = hints.get("return", Any)
    return payload, (None if reply is Any else reply)


def type_name(tp: Any) -> str:
    """``OrderPlaced``, ``Product | None``, ``list[Product]``: how messages name a type."""
    return (
        tp.__name__
        if isinstance(tp, type) and not typing.get_args(tp)
        else repr(tp).replace("typing.", "")
    )


def convert(name: str, payload: Any, target: Any, who: str) -> Any:
    """``payload`` as ``target`` (as is when it already is one); EventPayloadError if it is not.

    Dicts (and Structs of another type) are converted field by field, with the
    constraints of ``target`` checked, as msgspec decodes a request body.
    """
    if isinstance(target, type) and isinstance(payload, target):
        return payload
    try:
        return msgspec.convert(payload, target, from_attributes=True)
    except msgspec.ValidationError as exc:
        raise EventPayloadError(
            f"payload of {name!r} does not match {type_name(target)}, which {who} declares: {exc}"
        ) from exc


def check(name: str, payload: Any, expected: Iterable[tuple[Any, str]]) -> None:
    """Development check at the publisher: ``payload`` meets its own Struct's constraints
    (``Meta(gt=0)``, lengths...) and converts into every ``(type, who)`` in ``expected``."""
    if isinstance(payload, msgspec.Struct):
        kind = type(payload)
        try:
            msgspec.convert(msgspec.to_builtins(payload), kind)
        except msgspec.ValidationError as exc:
            raise EventPayloadError(
                f"payload of {name!r} breaks its own contract {kind.__name__}: {exc}"
            ) from exc
    for target, who in expected:
        convert(name, payload, target, who)


def event_as(event: Event[Any], target: Any, who: str) -> Event[Any]:
    """``event`` with its payload converted to ``target`` (the same event when it already is)."""
    payload = convert(event.name, event.payload, target, who)
    return event if payload is event.payload else msgspec.structs.replace(event, payload=payload)
