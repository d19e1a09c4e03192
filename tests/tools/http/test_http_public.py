"""The public facade ``tools.http``: the names plugins import, and the errors they raise."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable

import pytest

import tools.http
from microcore.tooling import MicroCoreError
from tools.http import (
    BadRequest,
    Conflict,
    Context,
    Forbidden,
    Http,
    HttpError,
    NotFound,
    Unauthorized,
)
from tools.http.http_tool import HttpTool


def test_public_all_lists_every_public_name() -> None:
    """``__all__`` is a sorted tuple of exactly the names the facade defines publicly
    (classes and type aliases)."""
    exported = tools.http.__all__
    assert isinstance(exported, tuple)
    assert list(exported) == sorted(exported)
    defined = {
        name
        for name, value in vars(tools.http).items()
        if not name.startswith("_")
        and name != "annotations"  # from __future__ import annotations
        and not isinstance(value, types.ModuleType)
    }
    assert defined == set(exported)


def test_public_bind_returns_http() -> None:
    """``HttpTool.bind`` is annotated with the exact type plugins receive."""
    hints = typing.get_type_hints(HttpTool.bind)
    assert hints["return"] is Http


def test_public_context_members_have_docstrings() -> None:
    """Every public member of Context says what it is."""
    slots: dict[str, str] = Context.__slots__  # documented slots
    missing = [
        name
        for name in dir(Context)
        if not name.startswith("_")
        and not (slots.get(name) or getattr(Context, name).__doc__ or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequest, 400, "bad_request"),
        (Unauthorized, 401, "unauthorized"),
        (Forbidden, 403, "forbidden"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
    ],
)
def test_public_error_classes_fix_status_and_code(
    error: Callable[..., HttpError], status: int, code: str
) -> None:
    """Each error class carries its status and code, and is an HttpError and a MicroCoreError."""
    raised = error("it went wrong", path="$.x", headers={"x-why": "test"})
    assert isinstance(raised, HttpError)
    assert isinstance(raised, MicroCoreError)
    assert (raised.http_status, raised.code, raised.message) == (status, code, "it went wrong")
    assert (raised.path, raised.headers) == ("$.x", {"x-why": "test"})
    assert str(raised) == "it went wrong"


def test_public_http_error_refuses_a_non_error_status() -> None:
    """HttpError is for 4xx and 5xx answers; any other status is a bug, said at once."""
    with pytest.raises(ValueError, match="400-599, got 302"):
        HttpError(302, "found", "moved")
