"""OpenAPI 3.1 from the registered endpoints and their msgspec models.

Schemas come from ``msgspec.json.schema_components``, so the document cannot
drift from what the endpoints validate. For each endpoint: path parameters
(typed by the model or the path convertor), query parameters (model fields on
methods without a body), the request body (model fields that are not path
parameters), the success response (``response_model``) and the error
responses in the one error shape.

Two things the handler itself declares refine its operation:

* its return annotation, when it is a Starlette ``Response`` class with a
  ``media_type`` (``-> HTMLResponse``), or a union of such classes, is the
  success response's content type instead of JSON;
* an ``openapi`` attribute on the handler (a mapping), for what annotations
  cannot say: ``security`` (the operation's security requirements),
  ``security_schemes`` (the schemes they name, added to the components) and
  ``responses`` (status code -> a response object, or the name of one of the
  error responses below, e.g. ``"Unauthorized"``; each replaces the generated one).

>>> handler.openapi = {
...     "security": [{"systemToken": []}],
...     "security_schemes": {"systemToken": {"type": "http", "scheme": "bearer"}},
...     "responses": {"401": "Unauthorized"},
... }
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from ._endpoint import Endpoint, is_struct
from ._errors import ErrorBody
from ._forms import FORM, MULTIPART
from ._routing import CompiledPath
from ._uploads import UploadFile

__all__ = ("ERROR_RESPONSES", "SSE_EVENT", "build_openapi")

REF = "#/components/schemas/{name}"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONVERTOR_SCHEMAS = {
    "IntegerConvertor": {"type": "integer"},
    "FloatConvertor": {"type": "number"},
    "UUIDConvertor": {"type": "string", "format": "uuid"},
    "PathConvertor": {"type": "string"},
    "StringConvertor": {"type": "string"},
}
_ERRORS = {
    "400": (
        "BadRequest",
        "The request cannot be served as sent: a body that is no JSON or nests too deep "
        "(code malformed_json), a malformed form (malformed_form), a value the database "
        "cannot hold (invalid_parameter)",
    ),
    "401": ("Unauthorized", "Authentication required (code unauthorized)"),
    "404": ("NotFound", "Nothing at this path (code not_found)"),
    "405": ("MethodNotAllowed", "Method not allowed here; Allow lists those that are"),
    "413": (
        "PayloadTooLarge",
        "Body over HTTP_MAX_BODY, or HTTP_MAX_UPLOAD on an upload (code payload_too_large)",
    ),
    "415": (
        "UnsupportedMediaType",
        "An upload takes multipart/form-data (code unsupported_media_type)",
    ),
    "422": ("ValidationError", "Validation failed; error.path names the field (validation_error)"),
    "500": ("InternalError", "Internal error; error.id is in the log (code internal_error)"),
}
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event (before OpenAPI 3.2, the schema of each event)",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
ERROR_RESPONSES = frozenset(name for name, _ in _ERRORS.values())
"""The names of the error responses in the components (all in the one error shape)."""


def build_openapi(
    routes: Iterable[tuple[CompiledPath, Endpoint]], *, title: str, version: str = "0.1.0"
) -> dict[str, Any]:
    """The OpenAPI document (a dict) for ``routes``, sorted by path then method."""
    routes = sorted(routes, key=lambda r: (r[1].path, r[1].method))
    types: list[Any] = [ErrorBody]
    for _, endpoint in routes:
        for model in (endpoint.request_model, endpoint.response_model):
            if model is not None and model not in types:
                types.append(model)
    try:
        schemas, components = msgspec.json.schema_components(
            types, schema_hook=_schema_hook, ref_template=REF
        )
    except (TypeError, ValueError):
        schemas, components = (), {}
    by_type = dict(zip(map(id, types), schemas, strict=False))
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    schemes: dict[str, Any] = {}
    for compiled, endpoint in routes:
        operation = _operation(compiled, endpoint, by_type, components)
        operation["operationId"] = _operation_id(endpoint.method, compiled.format, used_ids)
        if endpoint.auth:
            schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
            operation["security"] = [{"bearerAuth": []}]
        declared = getattr(endpoint.handler, "openapi", None)
        if isinstance(declared, Mapping):
            _declared(operation, declared, schemes)
        paths.setdefault(compiled.format, {})[endpoint.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components, "responses": _error_responses()},
    }
    if schemes:
        document["components"]["securitySchemes"] = schemes
    return document


def _declared(
    operation: dict[str, Any], declared: Mapping[str, Any], schemes: dict[str, Any]
) -> None:
    """What the handler's ``openapi`` mapping declares, applied to its ``operation``."""
    if "security" in declared:
        operation["security"] = [dict(requirement) for requirement in declared["security"]]
    schemes.update(declared.get("security_schemes") or {})
    responses = operation["responses"]
    for code, response in (declared.get("responses") or {}).items():
        if isinstance(response, str):  # a name that is none of them is only a description
            response = (
                {"$ref": f"#/components/responses/{response}"}
                if response in ERROR_RESPONSES
                else {"description": response}
            )
        responses[str(code)] = response
    operation["responses"] = dict(sorted(responses.items()))


def _operation(
    compiled: CompiledPath,
    endpoint: Endpoint,
    by_type: dict[int, Any],
    components: dict[str, Any],
) -> dict[str, Any]:
    model = endpoint.request_model
    fields = _fields_schema(model, by_type, components)
    required = set(fields.get("required", []))
    properties: dict[str, Any] = fields.get("properties", {})
    operation: dict[str, Any] = {}
    if endpoint.tags:
        operation["tags"] = list(endpoint.tags)
    if endpoint.summary:
        operation["summary"] = endpoint.summary
    doc = getattr(endpoint.handler, "__doc__", None)
    if doc and "\n" in doc.strip():
        operation["description"] = _dedent_rest(doc)
    parameters: list[dict[str, Any]] = []
    for name, convertor in compiled.convertors.items():
        schema = properties.get(name) or _CONVERTOR_SCHEMAS.get(
            type(convertor).__name__, {"type": "string"}
        )
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    has_body = endpoint.method in _BODY_METHODS and endpoint.kind == "route"
    if model is not None and is_struct(model) and not has_body:
        for name, schema in properties.items():
            if name in compiled.convertors:
                continue
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    if parameters:
        operation["parameters"] = parameters
    if has_body and model is not None:
        schema = _body_schema(model, by_type, fields, set(compiled.convertors))
        operation["requestBody"] = {
            "required": bool(schema.get("required", True)) if is_struct(model) else True,
            "content": {media: {"schema": schema} for media in _media_types(endpoint)},
        }
    operation["responses"] = _responses(endpoint, by_type, compiled, has_body)
    return operation


def _fields_schema(model: Any, by_type: dict[int, Any], components: dict[str, Any]) -> Any:
    """The object schema of a Struct model (resolved from its component), else {}."""
    if model is None or not is_struct(model):
        return {}
    schema = by_type.get(id(model), {})
    ref = schema.get("$ref", "")
    if ref:
        return components.get(ref.rsplit("/", 1)[-1], {})
    return schema


def _body_schema(
    model: Any, by_type: dict[int, Any], fields: dict[str, Any], path_names: set[str]
) -> Any:
    schema = by_type.get(id(model), {})
    if not is_struct(model) or not path_names & set(fields.get("properties", {})):
        return schema
    body = dict(fields)
    body["properties"] = {k: v for k, v in fields["properties"].items() if k not in path_names}
    body["required"] = [r for r in fields.get("required", []) if r not in path_names]
    if not body["required"]:
        del body["required"]
    return body


def _responses(
    endpoint: Endpoint, by_type: dict[int, Any], compiled: CompiledPath, has_body: bool
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if endpoint.kind == "sse":
        responses["200"] = {
            "description": "A stream of server-sent events",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        }
    else:
        success: dict[str, Any] = {"description": "Success"}
        media_types = _response_media_types(endpoint.handler)
        if endpoint.response_model is not None:
            schema = by_type.get(id(endpoint.response_model), {})
            success["content"] = {"application/json": {"schema": schema}}
        elif media_types:
            success["content"] = {media: {"schema": {"type": "string"}} for media in media_types}
        elif endpoint.status_code != 204:
            success["content"] = {"application/json": {"schema": {}}}
        responses[str(endpoint.status_code)] = success
    codes = ["500"]
    if has_body:
        codes += ["400", "413"]
        if endpoint.uploads:
            codes.append("415")
    if endpoint.request_model is not None or compiled.convertors:
        codes.append("422")
        if not has_body:  # a value from the URL the database cannot hold is a 400 too
            codes.append("400")
    if compiled.convertors:
        codes.append("404")
    if endpoint.auth:
        codes.append("401")
    for code in sorted(codes):
        responses[code] = {"$ref": f"#/components/responses/{_ERRORS[code][0]}"}
    return responses


def _schema_hook(tp: Any) -> dict[str, Any]:
    """The schema of a type msgspec does not know: an upload is a binary string."""
    if tp is UploadFile:
        return {"type": "string", "format": "binary"}
    raise NotImplementedError


def _media_types(endpoint: Endpoint) -> list[str]:
    """What the request body may be: multipart for an upload; JSON, and a url-encoded form
    when the model is flat (strings, numbers and booleans, or lists of them)."""
    if endpoint.uploads:
        return [MULTIPART]
    if is_struct(endpoint.request_model) and all(
        _flat(field.type) for field in msgspec.structs.fields(endpoint.request_model)
    ):
        return ["application/json", FORM]
    return ["application/json"]


_SCALARS = (str, int, float, bool)


def _flat(tp: Any) -> bool:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (list, tuple, set, frozenset):
        return all(arg in _SCALARS for arg in typing.get_args(tp) if arg is not Ellipsis)
    return tp in _SCALARS


def _response_media_types(handler: Any) -> list[str]:
    """The media types the handler's return annotation declares (Response classes only)."""
    function = inspect.unwrap(getattr(handler, "__func__", handler))
    annotation = getattr(function, "__annotations__", {}).get("return")
    if annotation is None:
        return []
    try:
        hints = typing.get_type_hints(
            types.SimpleNamespace(__annotations__={"return": annotation}),
            globalns=getattr(function, "__globals__", None),
        )
    except Exception:  # noqa: BLE001 - an annotation that does not resolve declares nothing here
        return []
    declared = hints["return"]
    options = typing.get_args(declared) if _is_union(declared) else (declared,)
    media = [
        option.media_type
        for option in options
        if isinstance(option, type) and issubclass(option, Response) and option.media_type
    ]
    return list(dict.fromkeys(media))


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _error_responses() -> dict[str, Any]:
    schema = {"$ref": REF.format(name="ErrorBody")}
    return {
        name: {"description": text, "content": {"application/json": {"schema": schema}}}
        for name, text in _ERRORS.values()
    }


def _operation_id(method: str, path: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()}{path}").strip("_")
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    used.add(candidate)
    return candidate


def _dedent_rest(doc: str) -> str:
    lines = doc.strip().splitlines()[1:]
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines).strip()
