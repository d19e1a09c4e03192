"""POST /users/logout: a browser forgets its session cookies (bearer clients drop the token)."""

from __future__ import annotations

from typing import Any

from microcore import Plugin
from tools.auth import Auth
from tools.http import Context, Http


class LogOutPlugin(Plugin):
    def __init__(self, http: Http, auth: Auth) -> None:
        self.http, self.auth = http, auth

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/users/logout", "POST", self.execute, status_code=204, tags=["users"]
        )

    async def execute(self, data: dict[str, Any], context: Context) -> None:
        """Log out"""
        self.auth.clear_session_cookies(context)
