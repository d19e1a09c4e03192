"""Plugins are typed end to end: mypy --strict catches a misspelt tool method."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mypy import api

REPO = Path(__file__).resolve().parents[1]

PLUGIN = """
from microcore import Plugin
from tools.db import Db
from tools.http import Context, Http, NotFound


class ShowPlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint("/things/{{id:int}}", "GET", self.execute)

    async def execute(self, data: dict[str, int], context: Context) -> dict[str, object]:
        row = await self.db.{method}("SELECT * FROM things WHERE id = ?", (data["id"],))
        if row is None:
            raise NotFound("no such thing")
        return dict(row)
"""


def test_typed_plugin_misspelt_tool_method_is_a_mypy_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`self.db.qeury_one(...)` in a plugin fails `mypy --strict`; spelt right it passes."""
    good, typo = tmp_path / "good_plugin.py", tmp_path / "typo_plugin.py"
    good.write_text(PLUGIN.format(method="query_one"))
    typo.write_text(PLUGIN.format(method="qeury_one"))
    monkeypatch.setenv("MYPYPATH", str(REPO))
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--follow-imports=silent", str(good), str(typo)]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, err
    assert errors == [
        f'{typo}:15: error: "Db" has no attribute "qeury_one"; maybe "query_one"?  [attr-defined]'
    ]
    assert os.fspath(good) not in out
