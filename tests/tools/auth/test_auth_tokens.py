"""The auth tool's passwords and tokens: argon2 off the loop, HS256 JWTs, rotation, refusals."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from tools.auth import Auth, InvalidToken

SECRET = b"s" * 64
OTHER = b"o" * 64


def _auth(secret: bytes = SECRET, previous: tuple[bytes, ...] = (), ttl: int = 60) -> Auth:
    auth = Auth()
    auth._configure(secret, previous, ttl)
    return auth


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


async def test_auth_hashes_passwords_with_argon2_and_verifies_them() -> None:
    """A hash is argon2id and salted; the right password verifies, a wrong one does not."""
    auth = _auth()
    hashed = await auth.hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert hashed != await auth.hash_password("correct horse")
    assert await auth.verify_password("correct horse", hashed) is True
    assert await auth.verify_password("wrong horse", hashed) is False
    assert await auth.verify_password("correct horse", "not-a-hash") is False


def test_auth_token_round_trip_carries_subject_and_claims() -> None:
    """issue_token signs sub, iat, exp and extra claims; verify_token gives them back."""
    auth = _auth(ttl=120)
    claims = auth.verify_token(auth.issue_token(7, claims={"roles": ["admin"]}))
    assert claims["sub"] == "7"
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 120
    short = auth.verify_token(auth.issue_token("u", ttl=5))
    assert short["exp"] - short["iat"] == 5


def test_auth_refuses_reserved_claims_and_bad_ttl() -> None:
    """The tool owns sub/exp/iat/nbf/jti, and a lifetime must be positive."""
    auth = _auth()
    with pytest.raises(ValueError, match="exp, sub are set by the auth tool"):
        auth.issue_token(1, claims={"sub": "admin", "exp": 2**40})
    with pytest.raises(ValueError, match="positive number of seconds"):
        auth.issue_token(1, ttl=0)


def test_auth_refuses_alg_none() -> None:
    """A token with alg none (no signature) is refused, whatever it claims."""
    auth = _auth()
    now = int(time.time())
    body = {"sub": "1", "roles": ["admin"], "iat": now, "exp": now + 60}
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(body)}."
    with pytest.raises(InvalidToken):
        auth.verify_token(forged)
    assert auth.claims_or_none(forged) is None


def test_auth_refuses_other_algorithms_even_with_the_secret() -> None:
    """Only HS256: an HS512 token signed with the very secret is refused."""
    now = int(time.time())
    token = jwt.encode({"sub": "1", "iat": now, "exp": now + 60}, SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken, match="not valid"):
        _auth().verify_token(token)


def test_auth_refuses_expired_tokens() -> None:
    """A token past its exp (beyond the few seconds of leeway) is refused as expired."""
    now = int(time.time())
    token = jwt.encode({"sub": "1", "iat": now - 120, "exp": now - 60}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="expired"):
        _auth().verify_token(token)


def test_auth_refuses_wrong_key_and_tampered_tokens() -> None:
    """Another app's key, a changed payload and garbage are all refused."""
    auth = _auth()
    with pytest.raises(InvalidToken, match="signature"):
        auth.verify_token(_auth(OTHER).issue_token(1))
    head, _, rest = auth.issue_token(1).partition(".")
    _, _, signature = rest.partition(".")
    now = int(time.time())
    tampered = f"{head}.{_b64({'sub': '2', 'roles': ['admin'], 'iat': now, 'exp': now + 60})}"
    with pytest.raises(InvalidToken):
        auth.verify_token(f"{tampered}.{signature}")
    for garbage in ("", "abc", "a.b.c"):
        with pytest.raises(InvalidToken):
            auth.verify_token(garbage)


def test_auth_refuses_tokens_without_required_claims() -> None:
    """A correctly signed token without exp (one that would never expire) is refused."""
    token = jwt.encode({"sub": "1", "iat": int(time.time())}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        _auth().verify_token(token)


def test_auth_previous_secret_verifies_until_removed() -> None:
    """After a rotation, tokens signed with the previous secret verify; once removed, not."""
    old = _auth(OTHER).issue_token(3)
    rotated = _auth(SECRET, previous=(OTHER,))
    assert rotated.verify_token(old)["sub"] == "3"
    assert rotated.verify_token(rotated.issue_token(4))["sub"] == "4"
    with pytest.raises(InvalidToken):
        _auth(SECRET).verify_token(old)


class _Cookies:
    def __init__(self) -> None:
        self.set: list[tuple[str, str, dict[str, Any]]] = []

    def set_cookie(self, key: str, value: str = "", **options: Any) -> None:
        self.set.append((key, value, options))

    def delete_cookie(self, key: str, **options: Any) -> None:
        self.set.append((key, "", {"deleted": True, **options}))


def test_auth_session_cookies_hold_token_and_readable_csrf() -> None:
    """The token goes in an HttpOnly cookie; the CSRF value in one the page can read."""
    auth = _auth()
    context = _Cookies()
    csrf = auth.set_session_cookies(context, "tok")
    (name, value, options), (csrf_name, csrf_value, csrf_options) = context.set
    assert (name, value, options["secure"]) == ("access_token", "tok", True)
    assert "httponly" not in options  # Context.set_cookie's default: HttpOnly
    assert (csrf_name, csrf_value, csrf_options["httponly"]) == ("csrf_token", csrf, False)
    auth.clear_session_cookies(context)
    assert [c[0] for c in context.set[2:]] == ["access_token", "csrf_token"]


def test_auth_verified_tokens_are_cached_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token verified once is answered from the cache (a copy), but never past its exp."""
    auth = _auth(ttl=60)
    token = auth.issue_token(1)
    first = auth.claims_or_none(token)
    assert first is not None
    first["sub"] = "tampered by a handler"
    calls: list[str] = []

    def expired(token: str) -> dict[str, Any]:
        calls.append(token)
        raise InvalidToken("the token has expired")

    monkeypatch.setattr(auth, "verify_token", expired)
    assert auth.claims_or_none(token) == {**first, "sub": "1"}  # from the cache
    assert calls == []
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert auth.claims_or_none(token) is None  # past exp: verified again, and refused
    assert calls == [token]
    assert token not in auth._verified


def test_auth_cache_is_bounded_and_forgets_on_new_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache keeps the newest tokens only, and a new key set empties it."""
    import tools.auth._auth as module

    monkeypatch.setattr(module, "VERIFIED_CACHE", 2)
    auth = _auth()
    tokens = [auth.issue_token(n) for n in range(3)]
    for token in tokens:
        auth.claims_or_none(token)
    assert list(auth._verified) == tokens[1:]
    auth._configure(OTHER, (), 60)
    assert auth._verified == {} and auth.claims_or_none(tokens[2]) is None
