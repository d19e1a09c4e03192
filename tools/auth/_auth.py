"""What a plugin receives as ``auth``: password hashes and signed tokens.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory
profile) in a worker thread: a hash takes tens of milliseconds of CPU and must not
stall the event loop. Tokens are JWTs signed with HMAC-SHA256 (PyJWT) under
``AUTH_SECRET``; a token signed with one of ``AUTH_PREVIOUS_SECRETS`` still verifies,
so a secret can be rotated without logging everybody out. Only HS256 is accepted:
``alg: none`` and every other algorithm are refused.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import anyio.to_thread
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ._errors import InvalidToken

__all__ = ("ALGORITHM", "RESERVED_CLAIMS", "Auth")

ALGORITHM = "HS256"
RESERVED_CLAIMS = frozenset({"sub", "iat", "exp", "nbf", "jti"})
_LEEWAY = 5  # seconds of clock difference between replicas tolerated on iat/exp
VERIFIED_CACHE = 4096  # tokens whose claims are remembered (a client sends one many times)


class Auth:
    """Hash and check passwords; issue and verify tokens.

    What a plugin receives when it names ``auth`` in its constructor::

        from tools.auth import Auth

        class LogInPlugin(Plugin):
            def __init__(self, http: Http, db: Db, auth: Auth) -> None: ...

            async def execute(self, data: Credentials, context: Context) -> Session:
                row = await self.db.query_one("SELECT * FROM users WHERE email = ?", (data.email,))
                if row is None or not await self.auth.verify_password(data.password, row["hash"]):
                    raise Unauthorized("wrong email or password")
                token = self.auth.issue_token(row["id"], claims={"roles": ["user"]})
                self.auth.set_session_cookies(context, token)   # for browsers
                return Session(token=token)
    """

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        self._secret = b""
        self._previous: tuple[bytes, ...] = ()
        self.ttl = 3600
        self.secure_cookies = True
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _configure(self, secret: bytes, previous: Sequence[bytes], ttl: int) -> None:
        self._secret, self._previous, self.ttl = secret, tuple(previous), ttl
        self._verified.clear()  # verified under other keys

    # -- passwords ----------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        """A salted argon2id hash of ``password``: store it, never the password.

        >>> hashed = await self.auth.hash_password(data.password)
        """
        return await anyio.to_thread.run_sync(self._hasher.hash, password)

    async def verify_password(self, password: str, hashed: str) -> bool:
        """Whether ``password`` matches ``hashed`` (False if malformed).

        >>> if not await self.auth.verify_password(data.password, row["password_hash"]): ...
        """

        def check() -> bool:
            try:
                return self._hasher.verify(hashed, password)
            except (VerificationError, InvalidHashError):
                return False

        return await anyio.to_thread.run_sync(check)

    # -- tokens -------------------------------------------------------------------------

    def issue_token(
        self, subject: str | int, *, claims: Mapping[str, Any] | None = None, ttl: int | None = None
    ) -> str:
        """A signed token for ``subject`` (its ``sub``), valid ``ttl`` seconds (``AUTH_TOKEN_TTL``
        by default). ``claims`` adds claims, e.g. ``{"roles": ["admin"]}`` for ``auth="admin"``
        routes; ``sub``, ``iat``, ``exp``, ``nbf`` and ``jti`` are the tool's to set.

        >>> token = self.auth.issue_token(user_id, claims={"roles": ["user"]})
        """
        extra = dict(claims or {})
        clash = sorted(RESERVED_CLAIMS & extra.keys())
        if clash:
            raise ValueError(
                f"claims {', '.join(clash)} are set by the auth tool; pass the subject as the "
                "first argument and the lifetime as ttl="
            )
        lifetime = self.ttl if ttl is None else ttl
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {lifetime!r}")
        now = int(time.time())
        payload = {
            **extra,
            "sub": str(subject),
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify_token(self, token: str) -> dict[str, Any]:
        """The claims of ``token``; :class:`~tools.auth.InvalidToken` if it is malformed,
        expired, or not signed with our key and algorithm (``alg: none`` included).

        >>> claims = self.auth.verify_token(token)      # {"sub": "7", "roles": [...], ...}
        """
        if not isinstance(token, str) or not token:
            raise InvalidToken("no token")
        error: jwt.InvalidTokenError | None = None
        for key in (self._secret, *self._previous):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    leeway=_LEEWAY,
                    options={"require": ["sub", "iat", "exp"]},
                )
            except jwt.InvalidSignatureError as exc:
                error = exc  # maybe signed with a previous secret: try the next one
                continue
            except jwt.ExpiredSignatureError as exc:
                raise InvalidToken("the token has expired") from exc
            except jwt.InvalidTokenError as exc:
                raise InvalidToken(f"the token is not valid: {exc}") from exc
            return claims
        raise InvalidToken("the token's signature does not match") from error

    def claims_or_none(self, token: str) -> dict[str, Any] | None:
        """The claims (a copy), or None where ``verify_token`` raises (for the http tool).

        A token verified before is not verified again until it expires: PyJWT takes tens
        of microseconds per token, a dictionary lookup well under one. The cache holds
        the last :data:`VERIFIED_CACHE` tokens and forgets them when the keys change.
        """
        verified = self._verified
        claims = verified.get(token)
        if claims is not None and claims["exp"] + _LEEWAY > time.time():
            verified.move_to_end(token)
            return dict(claims)
        try:
            claims = self.verify_token(token)
        except InvalidToken:
            verified.pop(token, None)
            return None
        verified[token] = claims
        if len(verified) > VERIFIED_CACHE:
            verified.popitem(last=False)
        return dict(claims)

    # -- browsers -----------------------------------------------------------------------

    def set_session_cookies(self, context: Any, token: str, *, max_age: int | None = None) -> str:
        """Log a browser in: ``token`` in an HttpOnly cookie; returns the CSRF value the
        page sends as ``X-CSRF-Token`` on writes.

        The token goes in the ``access_token`` cookie (HttpOnly) and the fresh CSRF value in
        the ``csrf_token`` cookie (readable by the page, which sends it back as the
        ``X-CSRF-Token`` header on POST/PUT/PATCH/DELETE). Both SameSite=Lax, Secure outside
        development.

        >>> self.auth.set_session_cookies(context, token)
        """
        age = self.ttl if max_age is None else max_age
        csrf = secrets.token_urlsafe(32)
        secure = self.secure_cookies
        context.set_cookie("access_token", token, max_age=age, secure=secure)
        context.set_cookie("csrf_token", csrf, max_age=age, secure=secure, httponly=False)
        return csrf

    def clear_session_cookies(self, context: Any) -> None:
        """Log a browser out (drop the session cookies)."""
        context.delete_cookie("access_token", secure=self.secure_cookies)
        context.delete_cookie("csrf_token", secure=self.secure_cookies)
