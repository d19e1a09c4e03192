"""The users API against the real app: sign up, log in, me, admin, rename, delete, log out."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from domains.users.models import User
from microcore.testing import EventRecorder, RunningApp

PASSWORD = "correct horse battery"


async def sign_up(client: AsyncClient, email: str, name: str = "Ann") -> dict[str, Any]:
    response = await client.post(
        "/users", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def log_in(client: AsyncClient, email: str) -> dict[str, str]:
    """Log in; returns the bearer header (and leaves the session cookies in the client)."""
    response = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def make_admin(app: RunningApp, user_id: int) -> None:
    db: Any = app.kernel.tool("db")
    await db.execute("UPDATE users SET roles = 'user,admin' WHERE id = ?", (user_id,))


async def test_sign_up_hashes_the_password_and_refuses_a_taken_email(
    client: AsyncClient, app: RunningApp, events: EventRecorder
) -> None:
    """201 with the account (no password in it); the stored hash is argon2; a taken email is 409."""
    user = await sign_up(client, "Ann@Example.com")
    assert user == {"id": user["id"], "email": "ann@example.com", "name": "Ann", "roles": ["user"]}
    signed_up = await events.wait_for("user.signed_up", timeout=1.0)
    assert signed_up.payload == User(
        id=user["id"], email="ann@example.com", name="Ann", roles=["user"]
    )
    db: Any = app.kernel.tool("db")
    row = await db.query_one("SELECT password_hash FROM users WHERE id = ?", (user["id"],))
    assert row["password_hash"].startswith("$argon2id$")
    body = {"email": "ann@example.com", "password": PASSWORD, "name": "Other"}
    again = await client.post("/users", json=body)
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "conflict",
        "message": "an account with this email already exists",
        "path": "$.email",
    }


async def test_sign_up_refuses_weak_input_and_extra_fields(client: AsyncClient) -> None:
    """A short password is 422 naming it; a 'roles' field (self-promotion) is refused too."""
    short = await client.post("/users", json={"email": "a@b.co", "password": "x", "name": "A"})
    assert short.status_code == 422
    assert short.json()["error"]["path"] == "$.password"
    body = {"email": "a@b.co", "password": PASSWORD, "name": "A", "roles": ["admin"]}
    assert (await client.post("/users", json=body)).status_code == 422


async def test_log_in_gives_a_token_that_opens_me(client: AsyncClient) -> None:
    """The token from /users/login opens /users/me, which shows the token's own account."""
    user = await sign_up(client, "bob@example.com", "Bob")
    bearer = await log_in(client, "bob@example.com")
    client.cookies.clear()
    assert (await client.get("/users/me")).status_code == 401
    assert (await client.get("/users/me", headers=bearer)).json() == user


async def test_log_in_wrong_password_or_unknown_email_is_the_same_401(client: AsyncClient) -> None:
    """A wrong password and an unknown email get the same 401 answer (no account probing)."""
    await sign_up(client, "cy@example.com")
    wrong = await client.post("/users/login", json={"email": "cy@example.com", "password": "nope"})
    unknown = await client.post("/users/login", json={"email": "zz@example.com", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "set-cookie" not in wrong.headers


async def test_log_in_is_rate_limited(client: AsyncClient) -> None:
    """The sixth log-in attempt within a minute from one address is 429 with Retry-After."""
    body = {"email": "nobody@example.com", "password": "guess"}
    statuses = [(await client.post("/users/login", json=body)).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


async def test_browser_session_uses_cookies_and_csrf(client: AsyncClient) -> None:
    """Log-in sets the cookies; a cookie PATCH needs X-CSRF-Token; log-out drops the cookies."""
    user = await sign_up(client, "dee@example.com", "Dee")
    await log_in(client, "dee@example.com")
    csrf = client.cookies["csrf_token"]
    assert (await client.get("/users/me")).json()["id"] == user["id"]
    path = f"/users/{user['id']}"
    assert (await client.patch(path, json={"name": "X"})).status_code == 403
    renamed = await client.patch(path, json={"name": "Deb"}, headers={"X-CSRF-Token": csrf})
    assert renamed.json()["name"] == "Deb"
    assert (await client.post("/users/logout")).status_code == 204
    assert (await client.get("/users/me")).status_code == 401


async def test_admin_route_is_403_for_users_200_for_admins(
    client: AsyncClient, app: RunningApp
) -> None:
    """GET /users needs the admin role; a fresh token after promotion carries it."""
    user = await sign_up(client, "eve@example.com")
    bearer = await log_in(client, "eve@example.com")
    client.cookies.clear()
    assert (await client.get("/users", headers=bearer)).status_code == 403
    await make_admin(app, user["id"])
    bearer = await log_in(client, "eve@example.com")
    listed = await client.get("/users", headers=bearer)
    assert [u["email"] for u in listed.json()] == ["eve@example.com"]


async def test_one_user_cannot_rename_or_delete_another(
    client: AsyncClient, app: RunningApp
) -> None:
    """IDOR: Bob's token cannot rename or delete Ann's account (403, nothing changes)."""
    ann = await sign_up(client, "ann@example.com", "Ann")
    await sign_up(client, "bob@example.com", "Bob")
    bob = await log_in(client, "bob@example.com")
    client.cookies.clear()
    path = f"/users/{ann['id']}"
    assert (await client.patch(path, json={"name": "pwned"}, headers=bob)).status_code == 403
    assert (await client.delete(path, headers=bob)).status_code == 403
    forged = {"name": "pwned", "sub": str(ann["id"]), "identity": {"sub": str(ann["id"])}}
    assert (await client.patch(path, json=forged, headers=bob)).status_code == 422
    ann_bearer = await log_in(client, "ann@example.com")
    assert (await client.get("/users/me", headers=ann_bearer)).json()["name"] == "Ann"


async def test_owner_and_admin_may_delete(client: AsyncClient, app: RunningApp) -> None:
    """An owner deletes their own account; an admin deletes anybody's; then it is 404."""
    ann = await sign_up(client, "ann@example.com")
    boss = await sign_up(client, "boss@example.com")
    await make_admin(app, boss["id"])
    cat = await sign_up(client, "cat@example.com")
    ann_bearer = await log_in(client, "ann@example.com")
    boss_bearer = await log_in(client, "boss@example.com")
    client.cookies.clear()
    assert (await client.delete(f"/users/{ann['id']}", headers=ann_bearer)).status_code == 204
    assert (await client.get("/users/me", headers=ann_bearer)).status_code == 401
    assert (await client.delete(f"/users/{cat['id']}", headers=boss_bearer)).status_code == 204
    assert (await client.delete(f"/users/{cat['id']}", headers=boss_bearer)).status_code == 404
    missing = await client.patch("/users/999", json={"name": "x"}, headers=boss_bearer)
    assert missing.status_code == 404


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_avatar_upload_by_owner_checks_the_bytes(
    client: AsyncClient, app: RunningApp
) -> None:
    """The owner uploads a PNG (stored, typed by its bytes); a script named .png is refused."""
    user = await sign_up(client, "pix@example.com")
    bearer = await log_in(client, "pix@example.com")
    client.cookies.clear()
    path = f"/users/{user['id']}/avatar"
    sent = await client.put(path, files={"image": ("me.png", PNG, "image/png")}, headers=bearer)
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"user_id": user["id"], "content_type": "image/png", "size": len(PNG)}
    db: Any = app.kernel.tool("db")
    row = await db.query_one("SELECT image FROM avatars WHERE user_id = ?", (user["id"],))
    assert bytes(row["image"]) == PNG
    fake = ("x.png", b"<script>alert(1)</script>", "image/png")
    refused = await client.put(path, files={"image": fake}, headers=bearer)
    assert refused.status_code == 400
    assert refused.json()["error"]["path"] == "$.image"


async def test_avatar_upload_for_another_account_is_refused(client: AsyncClient) -> None:
    """IDOR on uploads: one user cannot set another's avatar (403); no token is 401."""
    ann = await sign_up(client, "ann@example.com")
    await sign_up(client, "bob@example.com")
    bob = await log_in(client, "bob@example.com")
    client.cookies.clear()
    files = {"image": ("a.png", PNG, "image/png")}
    path = f"/users/{ann['id']}/avatar"
    answer = await client.put(path, files=files, headers=bob)
    assert answer.status_code == 403, answer.text
    assert (await client.put(path, files=files)).status_code == 401
