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
    "BadRequest",
    "Conflict",
    "ErrorBody",
    "ErrorDetail",
    "Forbidden",
    "HttpError",
    "NotFound",
    "Unauthorized",
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
    """Answer the request with ``status`` and the one error shape; raise it from a handler.

    >>> raise HttpError(402, "payment_required", "the card was declined")

    answers 402 with ``{"success": false, "error": {"code": "payment_required",
    "message": "the card was declined"}}``. ``path`` names the field at fault
    (``$.price``); ``headers`` are added to the response. The common statuses have
    their own classes: :class:`BadRequest`, :class:`Unauthorized`, :class:`Forbidden`,
    :class:`NotFound`, :class:`Conflict`.
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
        if not 400 <= status <= 599:
            raise ValueError(f"an HttpError status must be 400-599, got {status}")
        super().__init__(message)
        self.http_status: int = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers or {}


class _Status(HttpError):
    """An :class:`HttpError` whose status and code the class fixes (``http_status``, ``code``,
    the same class attributes every ``MicroCoreError`` carries)."""

    http_status: int
    code: str

    def __init__(
        self, message: str, *, path: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        cls = type(self)
        super().__init__(cls.http_status, cls.code, message, path=path, headers=headers)


class BadRequest(_Status):
    """400 ``bad_request``: the request makes no sense as sent.

    >>> raise BadRequest("start must be before end", path="$.start")
    """

    http_status, code = 400, "bad_request"


class Unauthorized(_Status):
    """401 ``unauthorized``: nobody (or nobody valid) is authenticated.

    >>> raise Unauthorized("the session has expired; log in again")
    """

    http_status, code = 401, "unauthorized"


class Forbidden(_Status):
    """403 ``forbidden``: authenticated, but not allowed to do this.

    >>> raise Forbidden("only the owner may delete an order")
    """

    http_status, code = 403, "forbidden"


class NotFound(_Status):
    """404 ``not_found``: what the request names does not exist.

    >>> raise NotFound(f"product {data.product_id} does not exist")
    """

    http_status, code = 404, "not_found"


class Conflict(_Status):
    """409 ``conflict``: the request clashes with the current state (a duplicate, a stale version).

    >>> raise Conflict(f"a product named {data.name!r} already exists")
    """

    http_status, code = 409, "conflict"


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
