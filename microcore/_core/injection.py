"""Dependency injection by constructor parameter name, resolved and validated once."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .errors import DependencyError, HookError

__all__ = ("Dependencies", "dependencies_of", "require_coroutine_function", "resolve")


class Dependencies(msgspec.Struct, frozen=True):
    """What a class's constructor asks for."""

    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.required + self.optional


def dependencies_of(cls: type, *, what: str) -> Dependencies:
    """Read ``cls.__init__``'s parameters; ``*args``/``**kwargs`` are refused.

    ``what`` names the class in errors, e.g. ``plugin "products.CreateProductPlugin"``.
    """
    init = vars(cls).get("__init__") or next(
        (vars(k)["__init__"] for k in cls.__mro__ if "__init__" in vars(k)), object.__init__
    )
    if init is object.__init__:
        return Dependencies((), ())
    signature = inspect.signature(init)
    required: list[str] = []
    optional: list[str] = []
    for index, param in enumerate(signature.parameters.values()):
        if index == 0:
            continue  # self
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise DependencyError(
                f"{what}: constructor parameter {star}{param.name} cannot be injected; "
                "name each tool you need as its own parameter, e.g. def __init__(self, http, db)"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise DependencyError(
                f"{what}: constructor parameter {param.name!r} is positional-only; "
                "tools are injected by keyword, remove the '/'"
            )
        (optional if param.default is not param.empty else required).append(param.name)
    return Dependencies(tuple(required), tuple(optional))


def resolve(
    deps: Dependencies,
    available: Mapping[str, Callable[[], Any]],
    *,
    what: str,
    failed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build constructor keyword arguments; ``available`` maps names to factories.

    A missing required name raises :class:`DependencyError` naming the dependency,
    why it is missing and what is available.
    """
    failed = failed or {}
    kwargs: dict[str, Any] = {}
    for name in deps.required:
        if name in failed:
            raise DependencyError(
                f"{what} needs tool {name!r}, which failed to start: {failed[name]}"
            )
        if name not in available:
            listing = ", ".join(sorted(set(available) | set(failed))) or "(none)"
            raise DependencyError(
                f"{what} needs tool {name!r}, which is not registered; available tools: {listing}"
            )
        kwargs[name] = available[name]()
    for name in deps.optional:
        if name in available and name not in failed:
            kwargs[name] = available[name]()
    return kwargs


def require_coroutine_function(fn: object, *, what: str) -> None:
    """Refuse a sync function where a coroutine function is needed, saying how to fix it."""
    target = getattr(fn, "__func__", fn)
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an async callable object is fine
    ):
        return
    if not callable(fn):
        raise HookError(f"{what} must be an async function, got {type(fn).__name__}")
    name = getattr(target, "__qualname__", repr(fn))
    short = name.rsplit(".", 1)[-1]
    raise HookError(f"{what} must be a coroutine function: declare it 'async def {short}(...)'")
