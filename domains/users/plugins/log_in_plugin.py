"""POST /users/login: a token for the right password (and session cookies for browsers).

Rate-limited per client address: guessing passwords costs a minute every five tries.
"""

from __future__ import annotations

from domains.users.models import Credentials, Session
from microcore import Plugin
from tools.auth import Auth
from tools.db import Db
from tools.http import Context, Http, Unauthorized


class LogInPlugin(Plugin):
    def __init__(self, http: Http, db: Db, auth: Auth) -> None:
        self.http, self.db, self.auth = http, db, auth

    async def on_boot(self) -> None:
        # an unknown email is checked against this hash too: both answers take as long
        self.decoy = await self.auth.hash_password("not anybody's password")
        self.http.add_endpoint(
            "/users/login", "POST", self.execute, tags=["users"], rate="5/minute"
        )

    async def execute(self, data: Credentials, context: Context) -> Session:
        """Log in"""
        row = await self.db.query_one(
            "SELECT id, password_hash, roles FROM users WHERE email = ?", (data.email.lower(),)
        )
        hashed = row["password_hash"] if row else self.decoy
        if not await self.auth.verify_password(data.password, hashed) or row is None:
            raise Unauthorized("wrong email or password")
        token = self.auth.issue_token(row["id"], claims={"roles": row["roles"].split(",")})
        csrf = self.auth.set_session_cookies(context, token)  # access_token + csrf_token
        return Session(token=token, expires_in=self.auth.ttl, csrf_token=csrf)
