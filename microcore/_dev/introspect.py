"""Introspection for the manifest: compact one-line schemas and public method signatures.

>>> compact_schema(NewProduct)
'NewProduct{name: str(1..200), price: float>0}'
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

__all__ = (
    "Method",
    "compact_schema",
    "first_paragraph",
    "first_sentence",
    "public_members",
    "signature_of",
)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs of defaults must not differ per run
_QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])")  # typing.Any -> Any
_ROLE = re.compile(r":\w+:`~?(?:[\w.]+\.)?(\w+)`")  # a Sphinx role: its last name
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)`][.])\s+(?=[A-Z`])")  # ". Next" or ". `x`" ends one


class Method(msgspec.Struct, frozen=True):
    """One public method (or property) as the manifest lists it."""

    signature: str
    doc: str


def compact_schema(tp: Any) -> str:
    """A one-line schema of a type: ``NewProduct{name: str(1..200), price: float>0}``.

    Fields marked ``?`` are optional. Types msgspec cannot describe show their name
    (``NewAvatar{user_id: int, image: UploadFile}``).
    """
    try:
        schema = msgspec.json.schema(tp, schema_hook=_named)
    except (TypeError, ValueError):
        return str(getattr(tp, "__name__", tp))
    defs = schema.pop("$defs", {})
    return _compact(schema, defs, ())


def _named(tp: Any) -> dict[str, Any]:
    """The schema of a type msgspec does not know (a tool's ``UploadFile``): its name."""
    return {_NAMED: getattr(tp, "__name__", str(tp))}


_NAMED = "x-microcore-type"


def _compact(schema: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> str:
    if _NAMED in schema:
        return str(schema[_NAMED])
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        if name in stack:
            return name
        return name + _compact(defs.get(name, {}), defs, (*stack, name))
    if "anyOf" in schema:
        return " | ".join(_compact(s, defs, stack) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(msgspec.json.encode(v).decode() for v in schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, defs, stack)
    if kind == "array":
        if "prefixItems" in schema:
            return "(" + ", ".join(_compact(s, defs, stack) for s in schema["prefixItems"]) + ")"
        return "[" + _compact(schema.get("items", {}), defs, stack) + "]"
    if kind == "string":
        return "str" + _string_bounds(schema)
    if kind in ("integer", "number"):
        return ("int" if kind == "integer" else "float") + _number_bounds(schema)
    return {"boolean": "bool", "null": "null"}.get(str(kind), "any")


def _object(schema: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", ()))
        fields = (
            f"{name}{'' if name in required else '?'}: {_compact(sub, defs, stack)}"
            for name, sub in properties.items()
        )
        return "{" + ", ".join(fields) + "}"
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        return "{str: " + _compact(extra, defs, stack) + "}"
    return "{}" if schema.get("title") else "object"


def _string_bounds(schema: dict[str, Any]) -> str:
    low, high = schema.get("minLength"), schema.get("maxLength")
    notes = []
    if low is not None or high is not None:
        notes.append(f"{low or 0}..{'' if high is None else high}")
    if "pattern" in schema:
        notes.append(f"/{schema['pattern']}/")
    if "format" in schema:
        notes.append(str(schema["format"]))
    return f"({', '.join(notes)})" if notes else ""


def _number_bounds(schema: dict[str, Any]) -> str:
    marks = (
        ("exclusiveMinimum", ">"),
        ("minimum", ">="),
        ("exclusiveMaximum", "<"),
        ("maximum", "<="),
    )
    return "".join(f"{op}{schema[key]}" for key, op in marks if key in schema)


# -- signatures and docstrings ----------------------------------------------------------


class _Text:
    """Shows as its text in ``inspect.Signature`` (annotations and defaults)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _annotation(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return value
    text = value if isinstance(value, str) else _QUALIFIED.sub("", inspect.formatannotation(value))
    if text == "Any" or text.startswith("Callable["):
        # says nothing the method's sentence does not: ``payload``, ``reply=None``, and a
        # handler's shape (``Serve ... with `async def handler(data, context)```)
        return inspect.Parameter.empty
    return _Text(text)


def _default(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return value
    return _Text(_ADDRESS.sub("", repr(value)))


def signature_of(func: Callable[..., Any], *, skip_first: bool = True, bare: bool = False) -> str:
    """``(sql: str, params: Params = ()) -> list[Row]``: annotations as written, no ``self``;
    ``bare`` leaves out the parameters' annotations (``(key, value='', *, path='/')``)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())[1 if skip_first else 0 :]
    params = [
        p.replace(
            annotation=inspect.Parameter.empty if bare else _annotation(p.annotation),
            default=_default(p.default),
        )
        for p in params
    ]
    return str(sig.replace(parameters=params, return_annotation=_annotation(sig.return_annotation)))


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc).split("\n\n", 1)[0]
    text = _ROLE.sub(lambda m: f"``{m[1]}``", text)  # :class:`~tools.auth.InvalidToken`
    return " ".join(text.split()).replace("``", "`")


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph (a method's line in the manifest)."""
    return _SENTENCE_END.split(first_paragraph(doc), maxsplit=1)[0]


def public_members(cls: type, *, skip: Iterable[str] = (), bare: bool = False) -> list[Method]:
    """Public methods and properties of ``cls`` (and its bases but ``object``), in source order
    (``bare``: without the parameters' annotations, see :func:`signature_of`)."""
    seen = set(skip)
    methods: list[Method] = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, property):
                methods.append(Method(f"{name} (property)", first_sentence(value.__doc__)))
                continue
            func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if not inspect.isfunction(func):
                continue
            prefix = "async " if inspect.iscoroutinefunction(func) else ""
            sig = signature_of(func, skip_first=not isinstance(value, staticmethod), bare=bare)
            methods.append(Method(f"{prefix}{name}{sig}", first_sentence(func.__doc__)))
    return methods
