"""OpenAPI 3.1 from the registered endpoints and their msgspec models.

Schemas come from ``msgspec.json.schema_components``, so the document cannot
drift from what the endpoints validate. For each endpoint: path parameters
(typed by the model or the path convertor), query parameters (model fields on
methods without a body), the request body (model fields that are not path
parameters), the success response (``response_model``) and the error
responses in the one error shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from ._endpoint import Endpoint, is_struct
from ._errors import ErrorBody
from ._routing import CompiledPath

__all__ = ("build_openapi",)

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
    "400": ("MalformedJSON", "Malformed JSON body (code malformed_json)"),
    "401": ("Unauthorized", "Authentication required (code unauthorized)"),
    "404": ("NotFound", "Nothing at this path (code not_found)"),
    "413": ("PayloadTooLarge", "Body over HTTP_MAX_BODY (code payload_too_large)"),
    "422": ("ValidationError", "Validation failed; error.path names the field (validation_error)"),
    "500": ("InternalError", "Internal error; error.id is in the log (code internal_error)"),
}


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
        schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    except (TypeError, ValueError):
        schemas, components = (), {}
    by_type = dict(zip(map(id, types), schemas, strict=False))
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    any_auth = False
    for compiled, endpoint in routes:
        operation = _operation(compiled, endpoint, by_type, components)
        operation["operationId"] = _operation_id(endpoint.method, compiled.format, used_ids)
        if endpoint.auth:
            any_auth = True
            operation["security"] = [{"bearerAuth": []}]
        paths.setdefault(compiled.format, {})[endpoint.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components, "responses": _error_responses()},
    }
    if any_auth:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
    return document


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
            "content": {"application/json": {"schema": schema}},
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
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    else:
        success: dict[str, Any] = {"description": "Success"}
        if endpoint.response_model is not None:
            schema = by_type.get(id(endpoint.response_model), {})
            success["content"] = {"application/json": {"schema": schema}}
        elif endpoint.status_code != 204:
            success["content"] = {"application/json": {"schema": {}}}
        responses[str(endpoint.status_code)] = success
    codes = ["500"]
    if has_body:
        codes += ["400", "413"]
    if endpoint.request_model is not None or compiled.convertors:
        codes.append("422")
    if compiled.convertors:
        codes.append("404")
    if endpoint.auth:
        codes.append("401")
    for code in sorted(codes):
        responses[code] = {"$ref": f"#/components/responses/{_ERRORS[code][0]}"}
    return responses


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
