"""PUT /users/{user_id}/avatar: store an avatar (PNG/JPEG, at most 1 MiB); owner or admin only."""

from __future__ import annotations

from domains.users.access import require_owner_or_admin
from domains.users.models import Avatar, NewAvatar
from microcore import Plugin
from tools.db import Db
from tools.http import BadRequest, Context, Http, NotFound

MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


class UploadAvatarPlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/users/{user_id:int}/avatar", "PUT", self.execute, tags=["users"], auth=True
        )

    async def execute(self, data: NewAvatar, context: Context) -> Avatar:
        """Upload an avatar"""
        require_owner_or_admin(context.identity, data.user_id)
        if data.image.size > 1024 * 1024:
            raise BadRequest("an avatar is at most 1 MiB", path="$.image")
        image = await data.image.read()  # the bytes decide the type, not the client's claim
        kind = next((t for magic, t in MAGIC.items() if image.startswith(magic)), None)
        if kind is None:
            raise BadRequest("send a PNG or JPEG image", path="$.image")
        if await self.db.query_one("SELECT id FROM users WHERE id = ?", (data.user_id,)) is None:
            raise NotFound(f"account {data.user_id} does not exist")
        await self.db.execute(
            "INSERT INTO avatars (user_id, content_type, image) VALUES (?, ?, ?) ON CONFLICT "
            "(user_id) DO UPDATE SET content_type = excluded.content_type, image = excluded.image",
            (data.user_id, kind, image),
        )
        return Avatar(user_id=data.user_id, content_type=kind, size=len(image))
