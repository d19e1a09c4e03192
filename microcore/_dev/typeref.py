"""The types a manifest names, defined: so AI_CONTEXT.md never mentions a type it does not show.

Tool packages export the types plugins use (``from tools.http import Context``).
Every capitalised name that appears in a tool's method signatures (and, in turn,
in those types' members) and that some tool package or ``microcore`` exports is
described once: a class by its public members, an alias by what it stands for,
an error by its HTTP status and code.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

import msgspec

from .introspect import Method, first_paragraph, public_members

__all__ = ("TypeInfo", "define_types", "exported_types")

_NAME = re.compile(r"\b[A-Z][A-Za-z0-9_]*\b")
_DEPTH = 2  # types named by types named by tool signatures; deeper ones are left out
_QUALIFIED = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])")


class TypeInfo(msgspec.Struct, frozen=True):
    """One type a manifest names: where to import it and what it offers."""

    name: str
    module: str  # e.g. tools.http
    kind: str  # class, alias, error
    doc: str = ""
    alias: str = ""  # what an alias stands for
    members: list[Method] = []
    status: int | None = None  # an error's HTTP status
    code: str = ""  # an error's code


def exported_types(modules: Mapping[str, ModuleType]) -> dict[str, tuple[str, Any]]:
    """Every public name the given modules export (``__all__``), first exporter wins."""
    found: dict[str, tuple[str, Any]] = {}
    for module_name, module in sorted(modules.items()):
        for name in getattr(module, "__all__", ()):
            if name not in found and hasattr(module, name):
                found[name] = (module_name, getattr(module, name))
    return found


def define_types(texts: Iterable[str], exported: Mapping[str, tuple[str, Any]]) -> list[TypeInfo]:
    """Describe every exported type whose name appears in ``texts`` (signatures), and the
    exported types named by those types' members, sorted by name."""
    defined: dict[str, TypeInfo] = {}
    errors = {n for n, (_, obj) in exported.items() if _is_error(obj)}  # all: the error table
    wanted = _names_in(texts) | errors
    for _ in range(_DEPTH):
        more: set[str] = set()
        for name in sorted(wanted - set(defined)):
            if name not in exported:
                continue
            module, obj = exported[name]
            info = _describe(name, module, obj)
            defined[name] = info
            more |= _names_in(m.signature for m in info.members)
            more |= _names_in([info.alias])
        wanted = more
    return [defined[n] for n in sorted(defined)]


def _names_in(texts: Iterable[str]) -> set[str]:
    return {name for text in texts for name in _NAME.findall(text)}


def _is_error(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


def _describe(name: str, module: str, obj: Any) -> TypeInfo:
    if _is_error(obj):
        if "status" in inspect.signature(obj.__init__).parameters:  # HttpError(status, code, ...)
            return TypeInfo(
                name, module, "error", first_paragraph(obj.__doc__), code="(status, code, message)"
            )
        status = getattr(obj, "http_status", None)
        return TypeInfo(
            name,
            module,
            "error",
            first_paragraph(obj.__doc__),
            status=status if isinstance(status, int) else None,
            code=str(getattr(obj, "code", "") or ""),
        )
    if isinstance(obj, type):
        struct = issubclass(obj, msgspec.Struct)
        fields = [  # a Struct's fields first: ``name: str``
            Method(f"{f.name}: {_field_type(f.type)}", "")
            for f in (msgspec.structs.fields(obj) if struct else ())
        ]
        return TypeInfo(
            name,
            module,
            "class",
            first_paragraph(obj.__doc__),
            members=fields
            + public_members(obj, skip=vars(msgspec.Struct) if struct else (), bare=True),
        )
    return TypeInfo(name, module, "alias", alias=_alias_text(obj))


def _field_type(tp: Any) -> str:
    """A field's type as text; a type variable (``Event``'s payload) is ``Any`` unless given."""
    return "Any" if isinstance(tp, typing.TypeVar) else _alias_text(tp)


def _alias_text(obj: Any) -> str:
    text = obj if isinstance(obj, str) else inspect.formatannotation(obj)
    return _QUALIFIED.sub("", text)


def tool_packages(names: Iterable[str]) -> dict[str, ModuleType]:
    """The imported ``tools.<name>`` packages of the given tools, plus ``microcore``."""
    packages = {f"tools.{n}": sys.modules.get(f"tools.{n}") for n in names}
    packages["microcore"] = sys.modules.get("microcore")
    return {k: v for k, v in packages.items() if v is not None}
