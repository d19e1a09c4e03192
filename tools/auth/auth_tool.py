"""The ``auth`` tool: argon2 password hashes, JWTs, and ``context.identity`` for ``auth=`` routes.

Settings: ``AUTH_SECRET`` (the HS256 signing key, at least 32 bytes; required outside
development, where a random one is made per process and the log says so),
``AUTH_PREVIOUS_SECRETS`` (comma-separated secrets that still verify tokens, for a
rotation: move the old secret there, set a new ``AUTH_SECRET``, remove the old one once
``AUTH_TOKEN_TTL`` has passed) and ``AUTH_TOKEN_TTL`` (seconds a token lives, default 3600).

At set-up the tool plugs its verifier into the http tool, which then answers
``add_endpoint(..., auth=True)`` / ``auth="admin"`` routes (401 without a valid token,
403 without the role) and fills ``context.identity`` with the verified claims.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import structlog

from microcore import Tool
from microcore.tooling import ConfigurationError, Owner
from tools.config import Config
from tools.http.http_tool import HttpTool

from ._auth import Auth

__all__ = ("MIN_SECRET_BYTES", "AuthTool")

MIN_SECRET_BYTES = 32
_log = structlog.get_logger("microcore.auth", tool="auth")


class AuthTool(Tool, Auth):
    """Passwords and tokens: argon2 hashes (off the event loop) and HS256 JWTs.

    >>> hashed = await self.auth.hash_password("correct horse")
    >>> await self.auth.verify_password("correct horse", hashed)
    True
    >>> token = self.auth.issue_token(7, claims={"roles": ["admin"]})
    >>> self.auth.verify_token(token)["sub"]
    '7'
    """

    name = "auth"

    def __init__(self, config: Config, http: HttpTool) -> None:
        Auth.__init__(self)
        self._config = config
        self._http = http
        self._unplug: Callable[[], None] = lambda: None

    async def setup(self) -> None:
        config = self._config
        secret = _secret(config.get("AUTH_SECRET") or "", "AUTH_SECRET")
        if not secret:
            if not config.development:
                raise ConfigurationError(
                    "AUTH_SECRET is not set; outside development the auth tool needs a secret "
                    f"of at least {MIN_SECRET_BYTES} bytes to sign tokens, e.g. "
                    "AUTH_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
            secret = secrets.token_bytes(MIN_SECRET_BYTES)
            _log.warning(
                "auth_secret_generated",
                detail="AUTH_SECRET is not set: signing tokens with a random secret made for "
                "this process (development only); tokens stop verifying when it restarts",
            )
        raw_previous = config.get("AUTH_PREVIOUS_SECRETS") or ""
        previous = [
            _secret(item, "AUTH_PREVIOUS_SECRETS")
            for item in raw_previous.split(",")
            if item.strip()
        ]
        ttl = config.get_int("AUTH_TOKEN_TTL", 3600)
        if ttl <= 0:
            raise ConfigurationError(
                f"AUTH_TOKEN_TTL must be a positive number of seconds, got {ttl}"
            )
        self._configure(secret, previous, ttl)
        self.secure_cookies = not config.development
        self._unplug = self._http.use_token_verifier(self.claims_or_none)

    async def shutdown(self) -> None:
        self._unplug()

    def bind(self, owner: Owner) -> Auth:
        """Every plugin shares the tool itself: it holds no per-plugin registrations."""
        return self


def _secret(raw: str, key: str) -> bytes:
    """``raw`` as signing-key bytes; refused when shorter than :data:`MIN_SECRET_BYTES`."""
    value = raw.strip().encode("utf-8")
    if value and len(value) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{key} has {len(value)} bytes; an HMAC-SHA256 secret needs at least "
            f"{MIN_SECRET_BYTES} (a shorter one can be guessed offline from any token), e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return value
