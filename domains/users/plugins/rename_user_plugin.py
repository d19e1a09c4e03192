"""PATCH /users/{user_id}: rename an account; only its owner or an admin may."""

from __future__ import annotations

from domains.users.access import require_owner_or_admin
from domains.users.models import USER_COLUMNS, Rename, User, user_from
from microcore import Plugin
from tools.db import Db
from tools.http import Context, Http, NotFound


class RenameUserPlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/users/{user_id:int}", "PATCH", self.execute, tags=["users"], auth=True
        )

    async def execute(self, data: Rename, context: Context) -> User:
        """Rename an account"""
        require_owner_or_admin(context.identity, data.user_id)
        await self.db.execute("UPDATE users SET name = ? WHERE id = ?", (data.name, data.user_id))
        row = await self.db.query_one(
            f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (data.user_id,)
        )
        if row is None:
            raise NotFound(f"account {data.user_id} does not exist")
        return user_from(row)
