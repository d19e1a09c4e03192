"""``tools.db`` is the plugin-facing facade: every public name is in ``__all__`` and
importable, and the tool's ``bind`` says plugins receive a ``Db``."""

from __future__ import annotations

import typing
from types import ModuleType

import tools.db
from tools.db.db_tool import DbTool


def test_db_facade_exports_every_public_name() -> None:
    """``__all__`` is a tuple naming exactly the public names the package defines."""
    public = {
        name
        for name, value in vars(tools.db).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)  # not submodules
    }
    public -= {"annotations"}  # from __future__ import annotations
    assert isinstance(tools.db.__all__, tuple)
    assert sorted(public) == sorted(tools.db.__all__)
    for name in ("Db", "Transaction", "Row", "Params", "DatabaseError", "IntegrityError"):
        assert name in tools.db.__all__


def test_db_bind_is_annotated_with_the_plugin_facing_type() -> None:
    """The manifest reads what plugins receive from ``bind``'s return annotation."""
    hints = typing.get_type_hints(DbTool.bind)
    assert hints["return"] is tools.db.Db
    assert issubclass(DbTool, tools.db.Db)


def test_db_errors_are_client_errors_where_the_input_is_at_fault() -> None:
    """IntegrityError answers 409, DataError 400; the others are the server's 500."""
    assert (tools.db.IntegrityError.http_status, tools.db.IntegrityError.code) == (
        409,
        "conflict",
    )
    assert (tools.db.DataError.http_status, tools.db.DataError.code) == (
        400,
        "invalid_parameter",
    )
    for error in (tools.db.OperationalError, tools.db.ProgrammingError, tools.db.MigrationError):
        assert error.http_status is None
