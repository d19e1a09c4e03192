"""The route table: built from the active registrations, swapped whole, read without locks.

Literal paths are found with one dict lookup; paths with parameters (Starlette
syntax, ``/items/{item_id:int}``) are tried in registration order with the
regex Starlette compiles for them. A table is immutable once built: a request
holds the table it started with, so a swap never disturbs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.convertors import Convertor, IntegerConvertor
from starlette.routing import compile_path

from microcore.tooling import RegistrationError

from ._endpoint import Endpoint

__all__ = ("CompiledPath", "PathRoutes", "RouteTable", "compile_route_path")

_GROUP_NAME = re.compile(r"\(\?P<\w+>")
_INT64 = range(-(2**63), 2**63)  # what a database integer column (and msgspec) can hold


class CompiledPath:
    """A path pattern: its regex, its parameter convertors and a key that ignores names.

    ``/items/{id:int}`` and ``/items/{item_id:int}`` share a key: they collide.
    """

    __slots__ = ("convertors", "format", "ints", "key", "path", "regex")

    def __init__(self, path: str) -> None:
        if not path.startswith("/"):
            raise RegistrationError(f"route path {path!r} must start with '/', e.g. '/products'")
        try:
            regex, fmt, convertors = compile_path(path)
        except (AssertionError, ValueError) as exc:  # Starlette asserts on unknown convertors
            raise RegistrationError(
                f"route path {path!r} is not valid: {exc}; "
                "use Starlette syntax, e.g. '/items/{item_id:int}' (str, int, float, uuid, path)"
            ) from exc
        self.path = path
        self.regex = regex if convertors else None
        self.format = fmt
        self.convertors: dict[str, Convertor[Any]] = convertors
        self.ints = tuple(k for k, c in convertors.items() if isinstance(c, IntegerConvertor))
        self.key = _GROUP_NAME.sub("(", regex.pattern) if convertors else path

    def match(self, path: str) -> dict[str, Any] | None:
        if self.regex is None:
            return {} if path == self.path else None
        found = self.regex.match(path)
        if found is None:
            return None
        params = {k: self.convertors[k].convert(v) for k, v in found.groupdict().items()}
        for name in self.ints:
            if params[name] not in _INT64:
                return None  # /products/9223372036854775808 names nothing that can exist
        return params


def compile_route_path(path: str) -> CompiledPath:
    return CompiledPath(path)


class PathRoutes:
    """Every method served on one path pattern."""

    __slots__ = ("allow", "compiled", "methods")

    def __init__(self, compiled: CompiledPath) -> None:
        self.compiled = compiled
        self.methods: dict[str, Endpoint] = {}
        self.allow = ""

    def seal(self) -> None:
        methods = set(self.methods)
        if "GET" in methods:
            methods.add("HEAD")
        self.allow = ", ".join(sorted(methods))


class RouteTable:
    """What the app serves right now (immutable once built)."""

    __slots__ = ("_dynamic", "_dynamic_ws", "_static", "_static_ws", "endpoints", "mounts")

    def __init__(
        self,
        endpoints: Iterable[tuple[CompiledPath, Endpoint]] = (),
        websockets: Iterable[tuple[CompiledPath, Any]] = (),
        mounts: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.endpoints: list[Endpoint] = []
        self._static: dict[str, PathRoutes] = {}
        self._dynamic: list[PathRoutes] = []
        by_key: dict[str, PathRoutes] = {}
        for compiled, endpoint in endpoints:
            routes = by_key.get(compiled.key)
            if routes is None:
                routes = by_key[compiled.key] = PathRoutes(compiled)
                if compiled.regex is None:
                    self._static[compiled.path] = routes
                else:
                    self._dynamic.append(routes)
            routes.methods[endpoint.method] = endpoint
            self.endpoints.append(endpoint)
        for routes in by_key.values():
            routes.seal()
        self._static_ws: dict[str, Any] = {}
        self._dynamic_ws: list[tuple[CompiledPath, Any]] = []
        for compiled, route in websockets:
            if compiled.regex is None:
                self._static_ws[compiled.path] = route
            else:
                self._dynamic_ws.append((compiled, route))
        # Longest prefix first, so /static/img wins over /static.
        self.mounts: list[tuple[str, Any]] = sorted(mounts, key=lambda m: -len(m[0]))

    def match(self, path: str) -> tuple[PathRoutes, dict[str, Any]] | None:
        """The routes of the path pattern that ``path`` matches, with its converted parameters."""
        routes = self._static.get(path)
        if routes is not None:
            return routes, {}
        for routes in self._dynamic:
            params = routes.compiled.match(path)
            if params is not None:
                return routes, params
        return None

    def match_websocket(self, path: str) -> tuple[Any, dict[str, Any]] | None:
        route = self._static_ws.get(path)
        if route is not None:
            return route, {}
        for compiled, route in self._dynamic_ws:
            params = compiled.match(path)
            if params is not None:
                return route, params
        return None

    def match_mount(self, path: str) -> tuple[Any, str] | None:
        """The static mount whose prefix holds ``path``, and the rest of the path."""
        for prefix, mount in self.mounts:
            if path == prefix or path.startswith(prefix + "/") or prefix == "":
                return mount, path[len(prefix) :].lstrip("/")
        return None
