"""POST /users: create an account with an argon2-hashed password; a taken email is 409."""

from __future__ import annotations

from domains.users.models import SignUp, User
from microcore import Plugin
from tools.auth import Auth
from tools.db import Db, IntegrityError
from tools.event_bus import EventBus
from tools.http import Conflict, Context, Http


class SignUpPlugin(Plugin):
    def __init__(self, http: Http, db: Db, auth: Auth, event_bus: EventBus) -> None:
        self.http, self.db, self.auth, self.bus = http, db, auth, event_bus

    async def on_boot(self) -> None:
        self.http.add_endpoint("/users", "POST", self.execute, status_code=201, tags=["users"])

    async def execute(self, data: SignUp, context: Context) -> User:
        """Sign up"""
        email = data.email.lower()
        hashed = await self.auth.hash_password(data.password)  # argon2, off the event loop
        try:
            user_id = await self.db.execute(
                "INSERT INTO users (email, name, password_hash) VALUES (?, ?, ?)",
                (email, data.name, hashed),
            )
        except IntegrityError:
            raise Conflict("an account with this email already exists", path="$.email") from None
        user = User(id=user_id, email=email, name=data.name, roles=["user"])
        await self.bus.publish("user.signed_up", user)  # a Struct: subscribers get a User
        return user
