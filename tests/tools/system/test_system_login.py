"""The dashboard's login: the server checks SYSTEM_TOKEN and sets the cookie, never page script."""

from __future__ import annotations

from tests.tools.system.conftest import PRODUCTION, TOKEN, Boot


async def test_login_sets_an_httponly_strict_secure_cookie(boot: Boot) -> None:
    """The right token gets 204 and a system_token cookie: HttpOnly, Secure, SameSite=Strict."""
    system = await boot(settings=PRODUCTION)
    response = await system.client.post("/system/login", json={"token": TOKEN})
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"system_token={TOKEN};")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/system"):
        assert attribute in cookie


async def test_login_with_a_wrong_token_sets_nothing(boot: Boot) -> None:
    """A wrong token is 401 in the error shape and no cookie is set."""
    system = await boot(settings=PRODUCTION)
    response = await system.client.post("/system/login", json={"token": "guess"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert response.json()["error"]["code"] == "unauthorized"


async def test_login_cookie_is_not_secure_in_development(boot: Boot) -> None:
    """In development (plain http on localhost) the cookie is not Secure, still HttpOnly."""
    system = await boot(settings={"SYSTEM_TOKEN": TOKEN})
    response = await system.client.post("/system/login", json={"token": TOKEN})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" not in cookie


async def test_logout_drops_the_cookie(boot: Boot) -> None:
    """POST /system/logout expires the system_token cookie."""
    system = await boot(settings=PRODUCTION)
    response = await system.client.post("/system/logout")
    assert response.status_code == 204
    assert "system_token=" in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_login_page_never_writes_document_cookie(boot: Boot) -> None:
    """The login page posts the token to the server; its script does not touch document.cookie."""
    system = await boot(settings=PRODUCTION)
    page = (await system.client.get("/system/dashboard")).text
    assert "document.cookie" not in page
    assert 'fetch("/system/login"' in page
