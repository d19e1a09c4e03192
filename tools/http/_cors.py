"""CORS from configuration: preflight answers and response headers for allowed origins.

Settings: ``HTTP_CORS_ORIGINS`` (comma-separated origins, or ``*``; empty turns CORS
off), ``HTTP_CORS_METHODS``, ``HTTP_CORS_HEADERS``, ``HTTP_CORS_CREDENTIALS``,
``HTTP_CORS_MAX_AGE``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ._errors import error_json
from ._responses import JSONReply

__all__ = ("Cors",)


class Cors:
    """Which cross-origin requests browsers may make.

    >>> Cors(["https://app.example.com"]).allows(b"https://app.example.com")
    True
    """

    def __init__(
        self,
        origins: list[str],
        *,
        methods: list[str] | None = None,
        headers: list[str] | None = None,
        credentials: bool = False,
        max_age: int = 600,
    ) -> None:
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/").encode("latin-1") for o in origins if o != "*")
        self.methods = methods or ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
        self.headers = headers or ["*"]
        self.credentials = credentials
        self.max_age = max_age
        self._methods = ", ".join(self.methods).encode("latin-1")

    def allows(self, origin: bytes) -> bool:
        return self.any_origin or origin in self.origins

    def is_preflight(self, scope: Any) -> bool:
        if scope["method"] != "OPTIONS":
            return False
        return any(name == b"access-control-request-method" for name, _ in scope["headers"])

    def preflight(self, origin: bytes, scope: Any) -> Response:
        """The answer to an ``OPTIONS`` preflight: 204 with the policy, or 400 naming why not."""
        requested_method = b""
        requested_headers = b""
        for name, value in scope["headers"]:
            if name == b"access-control-request-method":
                requested_method = value
            elif name == b"access-control-request-headers":
                requested_headers = value
        if not self.allows(origin):
            return self._refuse(f"origin {origin.decode('latin-1')!r} is not in HTTP_CORS_ORIGINS")
        if requested_method.decode("latin-1").upper() not in self.methods:
            return self._refuse(
                f"method {requested_method.decode('latin-1')!r} is not in HTTP_CORS_METHODS"
            )
        if "*" in self.headers:
            allow_headers = requested_headers
        else:
            allowed = {h.lower() for h in self.headers}
            asked = [h.strip().lower() for h in requested_headers.decode("latin-1").split(",")]
            refused = [h for h in asked if h and h not in allowed]
            if refused:
                return self._refuse(f"headers {', '.join(refused)} are not in HTTP_CORS_HEADERS")
            allow_headers = ", ".join(self.headers).encode("latin-1")
        headers = [
            (b"access-control-allow-methods", self._methods),
            (b"access-control-max-age", str(self.max_age).encode("latin-1")),
        ]
        if allow_headers:
            headers.append((b"access-control-allow-headers", allow_headers))
        return JSONReply(b"", 204, headers)

    def decorate(self, response: Response, origin: bytes) -> None:
        """Add the allow-origin headers to a response for an allowed origin."""
        if not self.allows(origin):
            return
        raw = response.raw_headers
        if self.any_origin and not self.credentials:
            raw.append((b"access-control-allow-origin", b"*"))
        else:
            raw.append((b"access-control-allow-origin", origin))
            raw.append((b"vary", b"Origin"))
        if self.credentials:
            raw.append((b"access-control-allow-credentials", b"true"))
        raw.append((b"access-control-expose-headers", b"x-request-id"))

    @staticmethod
    def _refuse(reason: str) -> Response:
        return JSONReply(error_json("cors_rejected", f"CORS preflight refused: {reason}"), 400)
