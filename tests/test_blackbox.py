"""Black-box: the real `uvicorn app:app` in a subprocess serves the products API."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import poll_url, serve

REPO = Path(__file__).resolve().parents[1]


def test_products_api_over_a_real_server(tmp_path: Path) -> None:
    """Create, list, get, count (via events), delete and 404 through uvicorn on loopback."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "MICROCORE_ENV": "development"}
    with serve(REPO, env) as base, httpx.Client(base_url=base, timeout=10) as http:
        created = http.post("/products", json={"name": "Pen", "price": 2.5})
        assert created.status_code == 201
        product_id = created.json()["id"]
        assert created.json() == {"id": product_id, "name": "Pen", "price": 2.5}

        listed = http.get("/products")
        assert listed.status_code == 200
        assert {"id": product_id, "name": "Pen", "price": 2.5} in listed.json()
        assert http.get(f"/products/{product_id}").json()["name"] == "Pen"

        # the stats plugin counts product.created events asynchronously
        poll_url(f"{base}/products/stats", lambda r: r.json()["created"] == 1, timeout=10)

        bad = http.post("/products", json={"name": "Pen", "price": "free"})
        assert bad.status_code == 422
        assert bad.json()["error"]["path"] == "$.price"

        assert http.delete(f"/products/{product_id}").status_code == 204
        missing = http.get(f"/products/{product_id}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"

        status = http.get("/system/status").json()
        assert all(p["status"] == "ok" for p in status["plugins"].values())
        assert http.get("/system/health").status_code == 200


def test_system_routes_need_the_token_outside_development(tmp_path: Path) -> None:
    """In production /system/status needs SYSTEM_TOKEN; /system/health stays open."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "MICROCORE_ENV": "production",
        "SYSTEM_TOKEN": "s3cret",
        "AUTH_SECRET": "a-production-signing-secret-of-40-bytes!",  # the auth tool needs one
    }
    with serve(REPO, env) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/system/health").status_code == 200
        refused = http.get("/system/status")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert (
            http.get("/system/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        ok = http.get("/system/status", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    with (
        serve(REPO, env) as base,
        httpx.Client(base_url=base, timeout=10, cookies={"system_token": "s3cret"}) as browser,
    ):
        assert browser.get("/system/status").status_code == 200
