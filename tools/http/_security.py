"""Who is asking, and may they: the token behind ``context.identity``, CSRF and rate limits.

The http tool does not verify tokens itself: a tool plugs a verifier in
(``HttpTool.use_token_verifier``; the ``auth`` tool does at set-up) and the
:class:`Guard` asks it. The token comes from ``Authorization: Bearer <token>``
or, for browsers, the ``access_token`` cookie. ``context.identity`` is what the
verifier returned for that token and nothing else: no body, query or header
field reaches it, and handlers and middleware cannot assign it.

A cookie rides along on requests other sites make, so a cookie-authenticated
``POST/PUT/PATCH/DELETE`` must echo the ``csrf_token`` cookie in the
``X-CSRF-Token`` header (a page of another site cannot read the cookie); a
cookie-authenticated websocket must come from a page of this host (``Origin``).
Bearer requests are exempt: a browser never adds that header by itself.

``rate="10/minute"`` counts requests per identity (``sub``) when authenticated,
else per client address, in fixed windows in the state tool, so every replica
shares one count; past the limit: 429 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import cookie_parser

from microcore.tooling import MicroCoreError, RegistrationError

from ._errors import Forbidden, HttpError, Unauthorized

if TYPE_CHECKING:  # the state tool is optional: only rate limits need it
    from tools.state import State

    from ._context import Context

__all__ = (
    "ACCESS_COOKIE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "Guard",
    "Rate",
    "TokenVerifier",
    "parse_rate",
)

TokenVerifier = Callable[[str], Mapping[str, Any] | None]
"""``verify(token)``: the token's claims, or None when it is not valid (bad, expired...)."""

ACCESS_COOKIE = "access_token"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RATE_NAMESPACE = "http.rate"

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)


class Rate:
    """``count`` requests per ``seconds`` (parsed from ``"10/minute"``)."""

    __slots__ = ("count", "seconds", "text")

    def __init__(self, count: int, seconds: int, text: str) -> None:
        self.count, self.seconds, self.text = count, seconds, text

    def __repr__(self) -> str:
        return f"Rate({self.text!r})"


def parse_rate(text: object, where: str) -> Rate | None:
    """``"10/minute"``, ``"100/hour"``, ``"5/10seconds"`` -> :class:`Rate`; None stays None."""
    if text is None:
        return None
    found = _RATE.match(text) if isinstance(text, str) else None
    if found is None or not isinstance(text, str) or int(found[1]) < 1 or found[2] == "0":
        raise RegistrationError(
            f"{where}: rate={text!r} is not a rate; write '<count>/<unit>' with a count of at "
            "least 1 and a unit of second, minute, hour or day, e.g. rate='10/minute' "
            "(or '<count>/<n><unit>', e.g. '5/10seconds')"
        )
    seconds = int(found[2] or 1) * _UNITS[found[3].lower()]
    return Rate(int(found[1]), seconds, text.strip())


def check_auth(auth: object, where: str) -> None:
    """``auth`` is None/False (open), True (any valid token) or a role name."""
    if auth is None or isinstance(auth, bool) or (isinstance(auth, str) and auth.strip()):
        return
    raise RegistrationError(
        f"{where}: auth={auth!r} is not a requirement; use auth=True (any valid token) or "
        "auth='<role>' (a role the token's 'roles' claim lists)"
    )


class Guard:
    """The token verifier the auth tool plugged in, and the state store rate limits count in."""

    def __init__(self) -> None:
        self.verifier: TokenVerifier | None = None
        self.state: State | None = None
        self.ws_origins: frozenset[str] | None = None  # HTTP_WS_ORIGINS: pages of other hosts

    # -- registration -----------------------------------------------------------------

    def require(self, *, auth: object, rate: Rate | None, where: str) -> None:
        """Refuse a requirement nothing can enforce, saying what to install."""
        check_auth(auth, where)
        if auth and self.verifier is None:
            raise RegistrationError(
                f"{where}: auth={auth!r} needs a token verifier and none is installed; add the "
                "auth tool (tools/auth/) and set AUTH_SECRET (when it is there, check "
                "/system/status: it fails to start without a valid AUTH_SECRET)"
            )
        if rate is not None and self.state is None:
            raise RegistrationError(
                f"{where}: rate={rate.text!r} counts requests in the state tool, which is not "
                "installed (or failed to start); add tools/state/ (STATE_URL)"
            )

    # -- identity ---------------------------------------------------------------------

    def identify(self, context: Context) -> Mapping[str, Any] | None:
        """The verified claims of the request's token, or None (no token, a bad one, or a
        cookie whose CSRF proof is missing)."""
        verifier = self.verifier
        if verifier is None:
            return None
        token, by_cookie = _credential(context)
        if token is None or (by_cookie and not _cookie_allowed(context, self.ws_origins)):
            return None
        return verifier(token)

    def admit(self, auth: object, context: Context, what: str) -> None:
        """Raise 401 unless a valid token came, 403 without the CSRF proof or the role."""
        verifier = self.verifier
        token, by_cookie = _credential(context)
        if verifier is None or token is None:
            raise Unauthorized(
                f"{what} requires authentication: send 'Authorization: Bearer <token>' "
                f"or the {ACCESS_COOKIE} cookie",
                headers={"WWW-Authenticate": "Bearer"},
            )
        claims = verifier(token)
        if claims is None:
            raise Unauthorized(
                "the token is not valid (expired, malformed or not signed by this app); "
                "log in again",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if by_cookie and not _cookie_allowed(context, self.ws_origins):
            if context.scope["type"] == "websocket":
                raise Forbidden(
                    "a cookie-authenticated websocket must be opened by a page of this site "
                    "or of an origin HTTP_WS_ORIGINS lists (its Origin is neither)"
                )
            raise HttpError(
                403,
                "csrf_failed",
                f"a cookie-authenticated {context.method} needs the {CSRF_HEADER} header "
                f"equal to the {CSRF_COOKIE} cookie; send it (or use a bearer token)",
            )
        if isinstance(auth, str):
            roles = claims.get("roles")
            if not isinstance(roles, list | tuple) or auth not in roles:
                raise Forbidden(f"{what} needs the role {auth!r}, which this token does not have")
        context._identity = claims

    # -- rate limits ------------------------------------------------------------------

    async def limit(self, rate: Rate, context: Context, what: str) -> None:
        """Count this request in its window; 429 with ``Retry-After`` past the limit."""
        state = self.state
        if state is None:  # refused at registration; the state tool went away since
            return
        identity = context.identity
        subject = identity.get("sub") if identity is not None else None
        who = f"sub:{subject}" if subject is not None else f"ip:{context.client}"
        now = time.time()
        window = int(now // rate.seconds)
        key = f"{what}|{who}|{window}"
        try:
            count = await state.incr(RATE_NAMESPACE, key, ttl=rate.seconds + 1)
        except MicroCoreError as exc:  # the store is down: refuse rather than not count
            raise HttpError(
                503,
                "rate_limit_unavailable",
                f"{what} is rate-limited and the state store that counts requests does not "
                "answer now; retry shortly",
                headers={"Retry-After": "1"},
            ) from exc
        if count > rate.count:
            retry = max(1, int((window + 1) * rate.seconds - now + 0.999))
            raise HttpError(
                429,
                "rate_limited",
                f"too many requests to {what}: the limit is {rate.text}; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )


def _credential(context: Context) -> tuple[str | None, bool]:
    """The token the request carries, and whether it came in the cookie (bearer wins)."""
    header = context.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            return token, False
    cookie = _cookies(context).get(ACCESS_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _cookie_allowed(context: Context, origins: frozenset[str] | None) -> bool:
    """Whether a cookie credential may act: a safe method, or the CSRF proof; for a websocket,
    a page of this host or of an origin ``HTTP_WS_ORIGINS`` lists."""
    if context.scope["type"] == "websocket":
        origin = (context.headers.get("origin") or "").strip().rstrip("/").lower()
        return _same_origin(context) or (origins is not None and origin in origins)
    if context.method in SAFE_METHODS:
        return True
    expected = _cookies(context).get(CSRF_COOKIE, "")
    sent = context.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def _same_origin(context: Context) -> bool:
    origin, host = context.headers.get("origin"), context.headers.get("host")
    return bool(origin and host) and urlsplit(origin).netloc.lower() == str(host).lower()


def _cookies(context: Context) -> dict[str, str]:
    raw = context.headers.get("cookie")
    return cookie_parser(raw) if raw else {}
