"""Models a handler declares with its annotations, read once at registration.

``async def execute(self, data: NewProduct, context: Context) -> Product`` means
``request_model=NewProduct, response_model=Product``: the ``data`` annotation is
the request model when it is a Struct; the return annotation is the response
model when it is a Struct or ``list[Struct]`` (``dict``, ``list``, ``None`` or a
``Response`` mean no response model). Explicit ``request_model=`` and
``response_model=`` arguments win and skip this altogether.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from microcore.tooling import RegistrationError

from ._endpoint import is_struct

__all__ = ("AnnotatedModels", "annotated_models")


class AnnotatedModels(typing.NamedTuple):
    """What the annotations declare (None: nothing usable)."""

    request: Any
    response: Any


_NONE = AnnotatedModels(None, None)


def annotated_models(
    handler: Callable[..., Any], where: str, *, request: bool = True, response: bool = True
) -> AnnotatedModels:
    """The request and response models ``handler``'s annotations declare.

    Only the annotations asked for (``data``'s when ``request``, the return's when
    ``response``) are resolved, against the handler's module: ``from __future__ import
    annotations`` makes them strings, and a ``context: Context`` imported under
    ``TYPE_CHECKING`` is fine. One of those two that names nothing there is refused.
    """
    function = inspect.unwrap(getattr(handler, "__func__", handler))
    if not inspect.isfunction(function) or not function.__annotations__:
        return _NONE  # an async callable object or an unannotated handler declares nothing
    parameters = list(inspect.signature(handler).parameters)  # a method's self is left out
    data = parameters[0] if parameters and request else None
    wanted = {
        name: annotation
        for name, annotation in function.__annotations__.items()
        if name == data or (name == "return" and response)
    }
    try:
        hints = typing.get_type_hints(
            types.SimpleNamespace(__annotations__=wanted), globalns=function.__globals__
        )
    except Exception as exc:  # NameError, TypeError, SyntaxError...: say which and how to fix
        raise RegistrationError(
            f"{where}: the annotations of {function.__qualname__} cannot be resolved: {exc}; "
            f"import the types it names at the top of {function.__module__} (not under "
            "TYPE_CHECKING), or pass request_model= and response_model= explicitly"
        ) from exc
    model = hints.get(data) if data is not None else None
    return AnnotatedModels(model if is_struct(model) else None, _response(hints.get("return")))


def _response(annotation: Any) -> Any:
    """A Struct or ``list[Struct]`` return annotation; anything else is no model."""
    if is_struct(annotation):
        return annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if is_struct(item):
            return annotation
    return None
