"""DELETE /users/{user_id}: close an account (204); only its owner or an admin may."""

from __future__ import annotations

from domains.users.access import require_owner_or_admin
from domains.users.models import UserId
from microcore import Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.http import Context, Http, NotFound


class DeleteUserPlugin(Plugin):
    def __init__(self, http: Http, db: Db, event_bus: EventBus) -> None:
        self.http, self.db, self.bus = http, db, event_bus

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/users/{user_id:int}",
            "DELETE",
            self.execute,
            status_code=204,
            tags=["users"],
            auth=True,
        )

    async def execute(self, data: UserId, context: Context) -> None:
        """Delete an account"""
        require_owner_or_admin(context.identity, data.user_id)
        if not await self.db.execute("DELETE FROM users WHERE id = ?", (data.user_id,)):
            raise NotFound(f"account {data.user_id} does not exist")
        await self.bus.publish("user.deleted", data)
