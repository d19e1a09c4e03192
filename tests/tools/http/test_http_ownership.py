"""Routes belong to their plugin: they serve while it is active and vanish with it."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from microcore.tooling import Owner, RegistrationError

from .conftest import Serve, Served

PING = """
from microcore import Plugin

class {name}(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("{path}", "GET", self.execute)

    async def execute(self, data, context):
        return {{"plugin": "{name}"}}
"""


def ping_plugin(name: str, path: str = "/ping") -> str:
    return PING.format(name=name, path=path)


async def test_ownership_failed_plugin_leaves_no_route(serve: Serve) -> None:
    """A plugin that raises in on_boot after registering serves nothing; others serve."""
    served = await serve(
        {
            "domains/a/plugins/broken_plugin.py": """
            from microcore import Plugin
            class BrokenPlugin(Plugin):
                def __init__(self, http):
                    self.http = http
                async def on_boot(self):
                    self.http.add_endpoint("/broken", "GET", self.execute)
                    raise RuntimeError("boot failed")
                async def execute(self, data, context):
                    return {}
            """,
            "domains/a/plugins/ok_plugin.py": ping_plugin("OkPlugin"),
        }
    )
    status = served.kernel.status().plugins
    assert status["a.BrokenPlugin"].status == "failed"
    assert status["a.BrokenPlugin"].registrations.get("route", []) == []
    assert (await served.client.get("/broken")).status_code == 404
    assert (await served.client.get("/ping")).json() == {"plugin": "OkPlugin"}


async def test_ownership_routes_are_listed_in_status(serve: Serve) -> None:
    """A plugin's routes appear under its entry in the kernel status."""
    served = await serve({"domains/a/plugins/ok_plugin.py": ping_plugin("OkPlugin")})
    assert served.kernel.status().plugins["a.OkPlugin"].registrations.get("route", []) == [
        "GET /ping"
    ]


async def test_ownership_unloaded_plugin_routes_vanish(serve: Serve) -> None:
    """Unloading a plugin removes its routes at once."""
    served = await serve({"domains/a/plugins/ok_plugin.py": ping_plugin("OkPlugin")})
    assert (await served.client.get("/ping")).status_code == 200
    await served.kernel.unload("a.OkPlugin")
    assert (await served.client.get("/ping")).status_code == 404
    owners = {e.owner.identity for e in served.http.registry.entries()}
    assert "a.OkPlugin" not in owners


async def test_ownership_pending_owner_does_not_serve(serve: Serve) -> None:
    """Registrations of a pending owner do not serve until it is activated."""
    served = await serve({})
    owner = Owner("a.LaterPlugin")
    handle = served.http.bind(owner)

    async def handler(data: Any, context: Any) -> Any:
        return {"ok": True}

    handle.add_endpoint("/later", "GET", handler)
    assert (await served.client.get("/later")).status_code == 404
    owner.activate()
    served.http.on_plugins_changed()
    assert (await served.client.get("/later")).json() == {"ok": True}


async def test_ownership_tool_owner_serves_at_once(serve: Serve) -> None:
    """A tool's own active owner serves what it registers without a plugin change."""
    served = await serve({})
    owner = Owner("tools.system")
    owner.activate()

    async def health(data: Any, context: Any) -> Any:
        return {"status": "ok"}

    registration = served.http.bind(owner).add_endpoint("/system/health", "GET", health)
    assert (await served.client.get("/system/health")).json() == {"status": "ok"}
    await registration.release()
    assert (await served.client.get("/system/health")).status_code == 404


async def test_ownership_second_plugin_claiming_route_fails_naming_both(serve: Serve) -> None:
    """Two plugins on one method+path: the one loaded second fails, naming both."""
    served = await serve(
        {
            "domains/a/plugins/first_plugin.py": ping_plugin("FirstPlugin"),
            "domains/b/plugins/second_plugin.py": ping_plugin("SecondPlugin"),
        }
    )
    status = served.kernel.status().plugins
    assert status["a.FirstPlugin"].status == "ok"
    second = status["b.SecondPlugin"]
    assert second.status == "failed"
    assert second.error.type == "RegistrationError"
    assert "'b.SecondPlugin'" in second.error.message
    assert "'a.FirstPlugin'" in second.error.message
    assert (await served.client.get("/ping")).json() == {"plugin": "FirstPlugin"}


async def test_ownership_collision_ignores_parameter_names(serve: Serve) -> None:
    """/items/{id:int} and /items/{item_id:int} are the same route and collide."""
    served = await serve({})
    first, second = Owner("a.APlugin"), Owner("b.BPlugin")

    async def handler(data: Any, context: Any) -> Any:  # pragma: no cover - never called
        return None

    served.http.bind(first).add_endpoint("/items/{id:int}", "GET", handler)
    with pytest.raises(RegistrationError, match=r"a\.APlugin"):
        served.http.bind(second).add_endpoint("/items/{item_id:int}", "GET", handler)
    served.http.bind(second).add_endpoint("/items/{item_id:int}", "POST", handler)


async def test_ownership_same_plugin_twice_is_refused(serve: Serve) -> None:
    """One plugin registering one method+path twice gets a clear error."""
    served = await serve({})
    handle = served.http.bind(Owner("a.APlugin"))

    async def handler(data: Any, context: Any) -> Any:  # pragma: no cover - never called
        return None

    handle.add_endpoint("/x", "GET", handler)
    with pytest.raises(RegistrationError, match="twice"):
        handle.add_endpoint("/x", "GET", handler)


async def test_ownership_new_version_takes_over_its_routes(serve: Serve) -> None:
    """A new version of a plugin (owner.replaces) re-registers its routes without a collision."""
    served = await serve({})
    old = Owner("a.APlugin")
    old.activate()

    async def v1(data: Any, context: Any) -> Any:
        return {"version": 1}

    async def v2(data: Any, context: Any) -> Any:
        return {"version": 2}

    served.http.bind(old).add_endpoint("/v", "GET", v1)
    new = Owner("a.APlugin", replaces=old)
    served.http.bind(new).add_endpoint("/v", "GET", v2)
    assert (await served.client.get("/v")).json() == {"version": 1}
    old.mark_released()
    new.activate()
    served.http.on_plugins_changed()
    assert (await served.client.get("/v")).json() == {"version": 2}
    await old.release()
    assert (await served.client.get("/v")).json() == {"version": 2}


SLOW = """
from microcore import Plugin
from domains.a import gate

class SlowPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/slow", "GET", self.execute)

    async def execute(self, data, context):
        gate.entered.set()
        await gate.release.wait()
        return {{"version": {version}}}
"""

GATE = """
import asyncio
entered = asyncio.Event()
release = asyncio.Event()
"""


async def test_ownership_swap_lets_in_flight_request_finish_on_old_handler(serve: Serve) -> None:
    """A commit during a request swaps the table; the request finishes on the old handler."""
    served = await serve(
        {
            "domains/a/__init__.py": "",
            "domains/a/gate.py": GATE,
            "domains/a/plugins/slow_plugin.py": SLOW.format(version=1),
        },
        settings={"MICROCORE_HOOK_TIMEOUT": "5"},  # a stuck old version fails fast, not in 30 s
    )
    gate = sys.modules["domains.a.gate"]
    kernel = served.kernel
    results: dict[str, object] = {}

    async def call() -> None:
        results["old"] = (await served.client.get("/slow")).json()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(5):
            await gate.entered.wait()
        path = kernel.root / "domains/a/plugins/slow_plugin.py"
        path.write_text(SLOW.format(version=2).lstrip())
        batch = await kernel.stage(load=[path])
        assert [r.status for r in batch.new] == ["ok"]
        kernel.commit(batch)
        kernel.retire(batch)  # in the background: the old version is still busy
        gate.entered.clear()
        tg.start_soon(_fetch_new, served, results)
        with anyio.fail_after(5):
            await gate.entered.wait()
        gate.release.set()
    assert results["old"] == {"version": 1}
    assert results["new"] == {"version": 2}


async def _fetch_new(served: Served, results: dict[str, object]) -> None:
    results["new"] = (await served.client.get("/slow")).json()
