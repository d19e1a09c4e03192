"""GET /users: every account, for admins only (auth="admin": 403 for everybody else)."""

from __future__ import annotations

from typing import Any

from domains.users.models import USER_COLUMNS, User, user_from
from microcore import Plugin
from tools.db import Db
from tools.http import Context, Http


class ListUsersPlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint("/users", "GET", self.execute, tags=["users"], auth="admin")

    async def execute(self, data: dict[str, Any], context: Context) -> list[User]:
        """List accounts (admin)"""
        rows = await self.db.query(f"SELECT {USER_COLUMNS} FROM users ORDER BY id")
        return [user_from(row) for row in rows]
