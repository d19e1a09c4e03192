"""mount_static: files under a prefix, never outside the folder, never dotfiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microcore.tooling import Owner, RegistrationError

from .conftest import Serve

STATIC = {
    "domains/site/static/index.html": "<h1>home</h1>",
    "domains/site/static/css/app.css": "body { color: red }",
    "domains/site/static/.env": "SECRET=1",
    "domains/site/static/.git/config": "[core]",
    "domains/site/secret.txt": "top secret",
    "domains/site/plugins/site_plugin.py": """
    from pathlib import Path
    from microcore import Plugin

    class SitePlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.mount_static("/assets", Path(__file__).parent.parent / "static")
    """,
}


async def raw_get(app: Any, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Send a path exactly as given (clients would normalise '..' away)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "scheme": "http",
        "server": ("testserver", 80),
        "root_path": "",
        "http_version": "1.1",
        "asgi": {"spec_version": "2.4"},
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


async def test_static_serves_files_and_index(serve: Serve) -> None:
    """Files are served with their content type; a folder serves its index.html."""
    served = await serve(STATIC)
    css = await served.client.get("/assets/css/app.css")
    assert css.status_code == 200
    assert css.text == "body { color: red }"
    assert css.headers["content-type"].startswith("text/css")
    index = await served.client.get("/assets/")
    assert index.text == "<h1>home</h1>"
    assert (await served.client.get("/assets")).text == "<h1>home</h1>"


async def test_static_refuses_dotfiles(serve: Serve) -> None:
    """Dotfiles and dot folders are not found."""
    served = await serve(STATIC)
    assert (await served.client.get("/assets/.env")).status_code == 404
    assert (await served.client.get("/assets/.git/config")).status_code == 404


async def test_static_refuses_path_traversal(serve: Serve) -> None:
    """'..' in any form never leaves the mounted folder."""
    served = await serve(STATIC)
    app = served.running.app
    for path in ("/assets/../secret.txt", "/assets/css/../../secret.txt", "/assets/..\\secret.txt"):
        status, body = await raw_get(app, path)
        assert status == 404, path
        assert b"top secret" not in body


async def test_static_refuses_symlink_out_of_folder(serve: Serve) -> None:
    """A symlink pointing outside the folder is not followed."""
    served = await serve(STATIC)
    static = served.kernel.root / "domains/site/static"
    (static / "link.txt").symlink_to(served.kernel.root / "domains/site/secret.txt")
    assert (await served.client.get("/assets/link.txt")).status_code == 404


async def test_static_missing_file_and_wrong_method(serve: Serve) -> None:
    """A missing file is a 404 and a POST is a 405 allowing GET, HEAD."""
    served = await serve(STATIC)
    missing = await served.client.get("/assets/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    post = await served.client.post("/assets/css/app.css")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_static_routes_win_over_mount_prefix(serve: Serve) -> None:
    """An endpoint under the mount prefix is served by the endpoint."""
    served = await serve(STATIC)
    owner = Owner("tools.test")
    owner.activate()

    async def version(data: Any, context: Any) -> Any:
        return {"version": 1}

    served.http.bind(owner).add_endpoint("/assets/version", "GET", version)
    assert (await served.client.get("/assets/version")).json() == {"version": 1}


async def test_static_mount_vanishes_with_plugin(serve: Serve) -> None:
    """Unloading the plugin removes its mount."""
    served = await serve(STATIC)
    await served.kernel.unload("site.SitePlugin")
    assert (await served.client.get("/assets/css/app.css")).status_code == 404


async def test_static_missing_directory_is_refused(serve: Serve, tmp_path: Path) -> None:
    """Mounting a folder that does not exist is a RegistrationError naming it."""
    served = await serve({})
    with pytest.raises(RegistrationError, match="not a directory"):
        served.http.bind(Owner("tools.test")).mount_static("/x", tmp_path / "missing")


async def test_folder_index_symlink_out_of_the_directory_is_not_served(serve: Serve) -> None:
    """A folder serves its index.html, but not when that is a symlink leading out of the
    mounted directory: refused like the same file asked for by name."""
    served = await serve(STATIC)
    static = served.kernel.root / "domains/site/static"
    secret = served.kernel.root / "domains/site/secret.txt"
    (static / "sub").mkdir()
    (static / "sub" / "index.html").symlink_to(secret)
    # the direct path is refused (resolved, outside the folder) ...
    assert (await served.client.get("/assets/sub/index.html")).status_code == 404
    # ... and so is the folder path that would serve the very same file
    folder = await served.client.get("/assets/sub/")
    assert "top secret" not in folder.text
    assert folder.status_code == 404
