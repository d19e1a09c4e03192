"""One JSON error shape for every failure the http tool answers.

.. code-block:: json

    {"success": false,
     "error": {"code": "validation_error",
               "message": "Expected `float`, got `str` - at `$.price`",
               "path": "$.price"}}

``path`` is present when a field is at fault, ``id`` on a 500 (the same id is
in the log line that carries the traceback).
"""

from __future__ import annotations

import msgspec

from microcore.tooling import MicroCoreError

__all__ = (
    "ErrorBody",
    "ErrorDetail",
    "HttpError",
    "error_json",
    "from_validation",
)


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """What went wrong: a stable ``code``, a human ``message``, the field ``path``, the ``id``."""

    code: str
    message: str
    path: str | None = None
    id: str | None = None


class ErrorBody(msgspec.Struct):
    """The body of every error response (``success`` is always false)."""

    success: bool
    error: ErrorDetail


_encode = msgspec.json.Encoder().encode


class HttpError(MicroCoreError):
    """An error answered with ``status`` and the error shape (raised inside the tool).

    >>> raise HttpError(413, "payload_too_large", "the body is over HTTP_MAX_BODY (1048576 bytes)")
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers or {}


def error_json(
    code: str, message: str, *, path: str | None = None, error_id: str | None = None
) -> bytes:
    """The encoded error shape."""
    return _encode(ErrorBody(False, ErrorDetail(code, message, path, error_id)))


def from_validation(exc: msgspec.ValidationError, *, prefix: str = "$") -> HttpError:
    """A 422 naming the field path msgspec reported (``$.price``), or the missing field.

    ``prefix`` re-roots the path, for a value validated on its own (a query parameter).
    """
    message = str(exc)
    reason, _, where = message.partition(" - at `")
    path = prefix + where[1:-1] if where else prefix
    missing = "Object missing required field `"
    if reason.startswith(missing):
        path = f"{path}.{reason[len(missing) : -1]}"
    if prefix != "$":
        message = f"{reason} - at `{path}`"
    return HttpError(422, "validation_error", message, path=path)
