"""GET /users/me: the account of whoever the verified token says is asking."""

from __future__ import annotations

from typing import Any

from domains.users.models import USER_COLUMNS, User, user_from
from microcore import Plugin
from tools.db import Db
from tools.http import Context, Http, Unauthorized


class MePlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint("/users/me", "GET", self.execute, tags=["users"], auth=True)

    async def execute(self, data: dict[str, Any], context: Context) -> User:
        """My account"""
        user_id = int(context.identity["sub"])  # from the token, never from the request
        row = await self.db.query_one(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise Unauthorized("the account of this token no longer exists; sign up again")
        return user_from(row)
