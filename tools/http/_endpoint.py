"""One endpoint, compiled once at registration: how to build ``data`` and encode the result.

``data`` is the merge of query parameters, the JSON body and path parameters
(path wins). With a Struct ``request_model`` it is validated into an instance:
strings from the URL are converted to the field types, JSON values are not (a
``"2.5"`` in the body is not a float). Without a model ``data`` is a plain dict.
The JSON body alone, when there is nothing to merge, is decoded straight into
the model by a decoder built here, once.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote_plus

import msgspec
from starlette.responses import Response

from microcore.tooling import Owner

from ._context import Context
from ._errors import HttpError, from_validation
from ._forms import MULTIPART, FormValue, form_kind, parse_multipart, parse_urlencoded
from ._responses import JSONReply
from ._uploads import UploadFile

__all__ = (
    "MAX_DEPTH",
    "Endpoint",
    "Handler",
    "ResponseValidationError",
    "decode_json",
    "render_result",
)

Handler = Callable[[Any, Context], Awaitable[Any]]

_SEQUENCES = (list, tuple, set, frozenset)
_encode = msgspec.json.Encoder().encode
_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()

MAX_DEPTH = 128
"""How deep a JSON body may nest: deeper is refused (400) before anything recurses into it."""


def _is_sequence(tp: Any) -> bool:
    """Whether a field takes several values (``?tag=a&tag=b``)."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if origin in _SEQUENCES or tp in _SEQUENCES:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(tp) if arg is not type(None))
    return False


def _is_list(tp: Any) -> bool:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return typing.get_origin(tp) is list or tp is list


def _mentions(tp: Any, target: type) -> bool:
    """Whether ``target`` appears in ``tp`` (``UploadFile | None``, ``list[UploadFile]``...)."""
    if tp is target:
        return True
    return any(_mentions(arg, target) for arg in typing.get_args(tp))


def parse_query(raw: bytes) -> list[tuple[str, str]]:
    """``a=1&b=x+y`` -> ``[("a", "1"), ("b", "x y")]`` (blank values kept)."""
    pairs = []
    for piece in raw.decode("latin-1").split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        if "%" in piece or "+" in piece:
            key, value = unquote_plus(key), unquote_plus(value)
        pairs.append((key, value))
    return pairs


def is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


class Endpoint:
    """A handler with everything needed to call it, decided at registration."""

    __slots__ = (
        "_body_decoder",
        "_fields",
        "_file_fields",
        "_lists",
        "_sequences",
        "_validate_response",
        "auth",
        "handler",
        "kind",
        "method",
        "owner",
        "path",
        "request_model",
        "response_model",
        "status_code",
        "summary",
        "tags",
        "uploads",
    )

    def __init__(
        self,
        *,
        method: str,
        path: str,
        handler: Handler,
        owner: Owner,
        request_model: Any = None,
        response_model: Any = None,
        status_code: int = 200,
        tags: list[str] | None = None,
        summary: str | None = None,
        auth: Any = None,
        kind: str = "route",
        validate_response: bool = False,
    ) -> None:
        self.method = method
        self.path = path
        self.handler = handler
        self.owner = owner
        self.kind = kind
        self.request_model = request_model
        self.response_model = response_model
        self.status_code = status_code
        self.tags = list(tags or [])
        self.summary = summary
        self.auth = auth
        self._validate_response = validate_response and response_model is not None
        self._body_decoder: msgspec.json.Decoder[Any] = (
            msgspec.json.Decoder(request_model) if request_model is not None else _ANY
        )
        self._fields: dict[str, Any] = {}
        self._sequences: frozenset[str] = frozenset()
        self._lists: tuple[str, ...] = ()  # required list fields
        if is_struct(request_model):
            info = msgspec.structs.fields(request_model)
            self._fields = {f.encode_name: f.type for f in info}
            self._sequences = frozenset(n for n, t in self._fields.items() if _is_sequence(t))
            self._lists = tuple(f.encode_name for f in info if f.required and _is_list(f.type))
        self._file_fields = frozenset(
            name for name, tp in self._fields.items() if _mentions(tp, UploadFile)
        )
        self.uploads = bool(self._file_fields)
        """Whether the model has ``UploadFile`` fields: a multipart route (``HTTP_MAX_UPLOAD``)."""
        if self._validate_response:
            # Fail at registration, not at the first request, when the type is not usable.
            msgspec.json.Decoder(response_model)

    # -- data ----------------------------------------------------------------------

    async def read_data(self, context: Context) -> Any:
        """``data`` for the handler, from the URL and the body: JSON, or a form (url-encoded or
        multipart, whose files stream into ``UploadFile``s) when the Content-Type says so."""
        content_type = context._content_type
        kind = form_kind(content_type) if content_type is not None else None
        query = context.scope["query_string"]
        if kind is None or (self.request_model is not None and not is_struct(self.request_model)):
            body = await context.body()
            if body and self.uploads:
                raise HttpError(
                    415,
                    "unsupported_media_type",
                    f"{self.method} {self.path} takes a multipart/form-data body (a form with "
                    f"files), not {(content_type or b'no Content-Type').decode('latin-1')!r}",
                )
            if self.request_model is None and content_type and b"json" not in content_type.lower():
                body = b""  # text, XML, bytes...: the handler reads them with context.body()
            return self.build_data(context.params, query, body or None)
        if kind is MULTIPART and content_type is not None and context._length != 0:
            files = context._uploads = []
            pairs: Sequence[tuple[str, FormValue]] = await parse_multipart(
                context._chunks(), content_type, files, self._file_fields
            )
        else:
            pairs = parse_urlencoded(await context.body())
        return self.build_form(context.params, query, pairs)

    def build_form(
        self, params: dict[str, Any], query: bytes, pairs: Sequence[tuple[str, FormValue]]
    ) -> Any:
        """``data`` from a form: its fields are folded in as query parameters are (strings
        converted to the field types), over the query's, under the path's."""
        if self.request_model is None:
            merged = self._query(query, typed=False)
            merged.update(pairs)
            merged.update(params)
            return merged
        merged = self._query(query, typed=True)
        merged.update(self._collect(pairs, typed=True))
        merged.update({k: v for k, v in params.items() if k in self._fields})
        for name in self._lists:  # a form sends nothing for an empty list (no file, no box ticked)
            merged.setdefault(name, [])
        return self._convert(merged, strict=False)

    def build_data(self, params: dict[str, Any], query: bytes, body: bytes | None) -> Any:
        """``data`` for the handler: validated model instance, or a dict of the merge."""
        model = self.request_model
        if model is None:
            merged = self._query(query, typed=False)
            if body:
                merged.update(self._body_object(body))
            if params:
                merged.update(params)
            return merged
        if not self._fields:  # a non-Struct model (list[Item], dict...) is the body alone
            return self._decode_body(body if body else b"null")
        if params:
            fields = self._fields
            params = {k: v for k, v in params.items() if k in fields}
        if not body:
            # Only strings from the URL (and typed path params): one lax conversion does all.
            merged = self._query(query, typed=True)
            if params:
                merged.update(params)
            return self._convert(merged, strict=False)
        if not params and not query:
            return self._decode_body(body)
        # URL strings are converted field by field, so the JSON body stays strictly typed.
        merged = {k: self._convert_param(k, v) for k, v in self._query(query, typed=True).items()}
        merged.update(self._body_object(body))
        if params:
            merged.update(params)
        return self._convert(merged, strict=True)

    def _convert(self, merged: dict[str, Any], *, strict: bool) -> Any:
        try:
            return msgspec.convert(merged, self.request_model, strict=strict)
        except msgspec.ValidationError as exc:
            raise from_validation(exc) from None

    def _decode_body(self, body: bytes) -> Any:
        try:
            return decode_json(self._body_decoder, body)
        except msgspec.ValidationError as exc:
            raise from_validation(exc) from None

    def _query(self, query: bytes, *, typed: bool) -> dict[str, Any]:
        """Query parameters; with a model only its fields, repeated ones as lists."""
        return self._collect(parse_query(query), typed=typed) if query else {}

    def _collect(self, pairs: Iterable[tuple[str, Any]], *, typed: bool) -> dict[str, Any]:
        """``pairs`` as a dict; with a model only its fields, repeated ones as lists. A field
        that holds one value given twice is refused: which one was meant is unknowable."""
        merged: dict[str, Any] = {}
        for key, value in pairs:
            if not typed:
                merged[key] = value
            elif key not in self._fields:
                continue  # unknown query parameters (cache busters...) are ignored
            elif key in self._sequences:
                merged.setdefault(key, []).append(value)
            elif key in merged:
                raise HttpError(
                    422,
                    "validation_error",
                    f"Expected one value, got several - at `$.{key}`",
                    path=f"$.{key}",
                )
            else:
                merged[key] = value
        return merged

    @staticmethod
    def _body_object(body: bytes) -> dict[str, Any]:
        decoded = decode_json(_ANY, body)
        if type(decoded) is not dict:
            kind = type(decoded).__name__.replace("list", "array")
            raise HttpError(
                422,
                "validation_error",
                f"Expected `object`, got `{kind}` - the JSON body must be an object",
                path="$",
            )
        return decoded

    def _convert_param(self, name: str, value: Any) -> Any:
        try:
            return msgspec.convert(value, self._fields[name], strict=False)
        except msgspec.ValidationError as exc:
            raise from_validation(exc, prefix=f"$.{name}") from None

    # -- result ----------------------------------------------------------------------

    def render(self, result: Any, context: Context) -> Response:
        """The response for what the handler returned."""
        if self._validate_response and result is not None and not isinstance(result, Response):
            self._check_response(result)
        return render_result(result, context, self.status_code)

    def _check_response(self, result: Any) -> None:
        """Development only: the result must match ``response_model`` (a bug otherwise)."""
        if isinstance(result, self.response_model if is_struct(self.response_model) else ()):
            return
        try:
            msgspec.convert(msgspec.to_builtins(result), self.response_model)
        except msgspec.ValidationError as exc:
            raise ResponseValidationError(
                f"{self.method} {self.path} returned a value that does not match its "
                f"response_model {getattr(self.response_model, '__name__', self.response_model)}: "
                f"{exc}; fix the handler or the model"
            ) from exc


def render_result(result: Any, context: Context, status_code: int = 200) -> Response:
    """Encode a handler's (or middleware's) result with the status and headers it asked for.

    ``None`` is 204 unless a status was set; a Starlette ``Response`` is sent as it
    is; a dict with ``"success": False`` is 400 unless a status was set.
    """
    extra = context.response_headers
    context.response_headers = None  # applied once, even when middleware passes it on
    if result is None:
        return JSONReply(b"", context.status or 204, extra)
    if isinstance(result, Response):
        if extra:
            result.raw_headers.extend(extra)
        return result
    status = context.status
    if status is None:
        failed = type(result) is dict and result.get("success") is False
        status = 400 if failed else status_code
    return JSONReply(_encode(result), status, extra)


class ResponseValidationError(HttpError):
    """A handler's result does not match its ``response_model`` (checked in development)."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "response_validation_error", message)


def decode_json(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """``body`` decoded; 400 when it is not JSON or nests deeper than :data:`MAX_DEPTH`.

    msgspec recurses once per level, so a body nested ~1,000 deep would raise
    ``RecursionError`` here, and a shallower one later (converting, encoding):
    the depth is bounded before the value goes anywhere.
    """
    try:
        value = decoder.decode(body)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise HttpError(
            400, "malformed_json", f"the request body is not valid JSON: {exc}"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    # Only a body with more brackets than the bound can nest past it: one C-speed count.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth_over(value, MAX_DEPTH):
        raise _too_deep()
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        elif isinstance(item, msgspec.Struct):
            children = msgspec.structs.astuple(item)
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep() -> HttpError:
    return HttpError(
        400,
        "malformed_json",
        f"the request body nests deeper than {MAX_DEPTH} levels; send a flatter document",
    )
