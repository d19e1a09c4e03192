"""A Node.js sidecar end to end: routes, events and requests both ways, crash, reload, stop."""

from __future__ import annotations

import os

import anyio

from microcore._dev.reload import Reloader
from tests.support import eventually
from tests.tools.sidecar.conftest import TRANSPORTS, Boot


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@TRANSPORTS
async def test_sidecar_route_forwards_the_request_and_relays_the_answer(boot: Boot) -> None:
    """Path params, query, headers and the JSON body reach the program; its status, headers
    and body come back; text answers keep their type; a large multi-byte body arrives whole."""
    lab = await boot()
    hello = await lab.client.get("/js/hello/ann", params={"x": "1"})
    assert hello.status_code == 200
    assert hello.json() == {"hello": "ann", "query": {"x": "1"}, "version": 1}
    echo = await lab.client.post("/js/echo", json={"n": 2}, headers={"x-test": "yes"})
    assert echo.status_code == 201
    assert echo.headers["x-echo"] == "yes"
    assert echo.json() == {"data": {"n": 2}, "body": '{"n":2}'}
    text = await lab.client.get("/js/text")
    assert (text.status_code, text.text) == (200, "plain words")
    assert text.headers["content-type"].startswith("text/plain")
    big = {"words": "zoë 名前 " * 20000}  # ~260 KB of multi-byte text, many reads both ways
    echoed = await lab.client.post("/js/echo", json=big)
    assert echoed.json()["data"] == big


@TRANSPORTS
async def test_sidecar_route_errors_have_the_one_error_shape(boot: Boot) -> None:
    """An HttpError answers its status and code; a thrown error is a 500 with an id; a body
    over HTTP_MAX_BODY is 413 and a late answer 504, like a Python route."""
    lab = await boot(settings={"HTTP_MAX_BODY": "1024", "SIDECAR_HTTP_TIMEOUT": "0.3"})
    fail = await lab.client.get("/js/fail")
    assert fail.status_code == 409
    assert fail.json() == {
        "success": False,
        "error": {"code": "conflict", "message": "that clashes"},
    }
    boom = await lab.client.get("/js/boom")
    assert boom.status_code == 500
    assert boom.json()["error"]["id"]
    assert "kaboom" not in boom.text
    big = await lab.client.post("/js/echo", json={"blob": "x" * 2000})
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    slow = await lab.client.get("/js/slow")
    assert slow.status_code == 504
    assert slow.json()["error"]["code"] == "timeout"


@TRANSPORTS
async def test_sidecar_events_flow_both_ways_with_causality(boot: Boot) -> None:
    """An event the sidecar subscribes to reaches it; what it publishes in answer reaches the
    bus from the sidecar's identity, in the same causal chain."""
    lab = await boot()
    ping_id = await lab.probe.publish("test.ping", {"n": 7})
    pong = await lab.published("js.pong")
    assert pong.payload == {"n": 7, "version": 1}
    assert pong.source == "lab.worker"
    ping = next(e for e in lab.bus.history() if e.id == ping_id)
    assert pong.correlation_id == ping.correlation_id
    assert pong.parent_id == ping_id


@TRANSPORTS
async def test_sidecar_request_reply_both_ways(boot: Boot) -> None:
    """Python requests a name the sidecar answers; the sidecar requests a name Python answers;
    a request nobody answers comes back as an error naming why."""
    lab = await boot()
    assert await lab.probe.request("js.double", {"n": 21}) == {"value": 42}
    asked = await lab.client.get("/js/ask", params={"say": "hi"})
    assert asked.json() == {"echo": {"said": "hi"}, "by": "python"}
    nobody = await lab.client.get("/js/nobody")
    assert nobody.status_code == 500  # the program's own request failed: its error, logged


@TRANSPORTS
async def test_sidecar_shows_in_status_graph_and_routes(
    boot: Boot, transport: dict[str, str]
) -> None:
    """/system/status lists the sidecar as a plugin with pid, restarts and transport (over
    NATS, its run's subjects); /system/graph has it as a plugin node answering its request
    name; /system/routes names it as the owner."""
    lab = await boot()
    status = (await lab.client.get("/system/status")).json()["plugins"]["lab.worker"]
    assert status["status"] == "ok"
    assert status["file"] == "domains/lab/plugins/worker.sidecar.toml"
    assert status["details"]["restarts"] == 0
    assert _alive(status["details"]["pid"])
    assert status["details"]["transport"] == transport["transport"]
    if transport["transport"] == "nats":
        base = f"{transport['EVENT_BUS_STREAM']}_sidecar.lab.worker."
        subjects = status["details"]["subjects"]
        assert subjects["in"].startswith(base) and subjects["in"].endswith(".in")
        assert subjects["out"] == subjects["in"].removesuffix(".in") + ".out"
    else:
        assert "subjects" not in status["details"]
    assert "GET /js/hello/{name}" in status["routes"]
    graph = (await lab.client.get("/system/graph")).json()
    node = next(n for n in graph["nodes"] if n["id"] == "lab.worker")
    assert node == {"id": "lab.worker", "kind": "plugin", "status": "ok"}
    routes = (await lab.client.get("/system/routes")).json()
    owners = {r["path"]: r["owner"] for r in routes["routes"]}
    assert owners["/js/hello/{name}"] == "lab.worker"


@TRANSPORTS
async def test_sidecar_crash_marks_it_failed_then_it_restarts(boot: Boot) -> None:
    """A crash marks the sidecar failed (health 503, its routes 503 in the error shape, its
    subscriptions gone) while other plugins serve; it restarts with a new pid."""
    lab = await boot(settings={"SIDECAR_RESTART_BACKOFF": "1"})
    first = lab.plugin().details["pid"]
    crashed = await lab.client.get("/js/crash")
    assert crashed.status_code == 503
    assert crashed.json()["error"]["code"] == "sidecar_unavailable"
    await eventually(lambda: lab.plugin().details["last_error"])
    assert lab.plugin().status == "failed"
    assert "exited with code 3" in lab.plugin().error.message
    assert "crashing on purpose" in lab.plugin().error.message
    down = await lab.client.get("/js/hello/ann")
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "sidecar_unavailable"
    assert (await lab.client.get("/system/health")).status_code == 503
    assert await lab.probe.request("py.echo", {"still": "here"}) == {
        "echo": {"still": "here"},
        "by": "python",
    }
    await eventually(lambda: lab.plugin().status == "ok", timeout=20)
    assert lab.plugin().details["restarts"] == 1
    assert lab.plugin().details["pid"] != first
    assert (await lab.client.get("/js/hello/ann")).status_code == 200
    assert not _alive(first)


@TRANSPORTS
async def test_sidecar_reload_swaps_in_the_new_version_atomically(boot: Boot) -> None:
    """Editing the program restarts only the sidecar: requests made during the reload are all
    answered (old version until the new one is ready), then the new code serves."""
    lab = await boot()
    python_owner = lab.kernel.plugins["lab.EchoPlugin"].owner
    old_pid = lab.plugin().details["pid"]
    program = lab.root / "domains/lab/plugins/worker.js"
    program.write_text(program.read_text().replace("const VERSION = 1;", "const VERSION = 2;"))
    statuses: list[int] = []
    versions: set[int] = set()

    async def hammer(done: anyio.Event) -> None:
        while not done.is_set():
            answer = await lab.client.get("/js/hello/ann")
            statuses.append(answer.status_code)
            versions.add(answer.json().get("version", 0))

    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hammer, done)
        report = await Reloader(lab.kernel).apply([program])
        done.set()
    assert report.applied == ["domains/lab/plugins/worker.js"]
    assert set(statuses) == {200}
    assert (await lab.client.get("/js/hello/ann")).json()["version"] == 2
    assert lab.plugin().details["pid"] != old_pid
    assert lab.kernel.plugins["lab.EchoPlugin"].owner is python_owner  # untouched
    await eventually(lambda: not _alive(old_pid))


async def test_sidecar_declaration_edit_and_removal_reload(boot: Boot) -> None:
    """Editing the declaration restarts with it (a new env); deleting it stops the sidecar
    and its routes go; a new declaration starts one."""
    lab = await boot()
    toml = lab.root / "domains/lab/plugins/worker.sidecar.toml"
    reloader = Reloader(lab.kernel)
    toml.write_text(toml.read_text().replace('doc = "The test worker."', 'doc = "Edited."'))
    old_pid = lab.plugin().details["pid"]
    await reloader.apply([toml])
    assert lab.plugin().details["pid"] != old_pid
    text = toml.read_text()
    toml.unlink()
    await reloader.apply([toml])
    assert "lab.worker" not in lab.kernel.status().plugins
    assert (await lab.client.get("/js/hello/ann")).status_code == 404
    toml.write_text(text)
    await reloader.apply([toml])
    assert lab.plugin().status == "ok"
    assert (await lab.client.get("/js/hello/ann")).status_code == 200


async def test_sidecar_broken_reload_keeps_the_old_version_serving(boot: Boot) -> None:
    """A new version that fails to start leaves the old one serving; the error shows as the
    sidecar's reload error until a good version replaces it."""
    lab = await boot()
    program = lab.root / "domains/lab/plugins/worker.js"
    good = program.read_text()
    program.write_text("process.exit(5);\n")
    report = await Reloader(lab.kernel).apply([program])
    assert "domains/lab/plugins/worker.js" in report.failed
    assert "exited with code 5" in lab.plugin().reload_error.message
    assert lab.plugin().status == "ok"
    assert (await lab.client.get("/js/hello/ann")).status_code == 200
    program.write_text(good)
    await Reloader(lab.kernel).apply([program])
    assert lab.plugin().reload_error is None


async def test_sidecar_registers_only_what_it_declares(boot: Boot) -> None:
    """A route the declaration does not list is refused, naming the file to add it to; the
    program's start fails and the sidecar shows failed with its stderr."""
    lab = await boot(files={"domains/lab/plugins/worker.sidecar.toml": WORKER_UNDECLARED})
    status = lab.plugin()
    assert status.status == "failed"
    assert "GET /js/secret is not declared" in status.error.message
    assert "worker.sidecar.toml" in status.error.message


@TRANSPORTS
async def test_sidecar_stops_with_the_app(boot: Boot) -> None:
    """Shutdown ends the program (its stdin closes and the client exits)."""
    lab = await boot()
    pid = lab.plugin().details["pid"]
    await lab.running.stop()
    assert not _alive(pid)


WORKER_UNDECLARED = """
command = ["node", "worker.js"]

[env]
UNDECLARED = "1"

[declares]
routes = [
    "GET /js/hello/{name}", "POST /js/echo", "GET /js/text", "GET /js/fail", "GET /js/boom",
    "GET /js/slow", "GET /js/crash", "GET /js/ask", "GET /js/nobody",
]
responds = ["js.double"]
subscribes = ["test.ping"]
"""


async def test_sidecar_reload_edges(boot: Boot) -> None:
    """A declaration saved unchanged restarts nothing; a broken edit keeps the old run serving
    and says why until fixed; a new broken declaration fails; files it does not watch (or
    outside its folder) are not its business."""
    lab = await boot()
    reloader = Reloader(lab.kernel)
    toml = lab.root / "domains/lab/plugins/worker.sidecar.toml"
    pid = lab.plugin().details["pid"]
    assert (await reloader.apply([toml])).applied == ["domains/lab/plugins/worker.sidecar.toml"]
    assert lab.plugin().details["pid"] == pid
    good = toml.read_text()
    toml.write_text("unknown = 1\n" + good)
    report = await reloader.apply([toml])
    assert "unknown" in report.failed["domains/lab/plugins/worker.sidecar.toml"].message
    assert "unknown" in lab.plugin().reload_error.message
    assert (await lab.client.get("/js/hello/ann")).status_code == 200
    toml.write_text(good)
    await reloader.apply([toml])
    assert lab.plugin().reload_error is None
    broken = lab.root / "domains/lab/plugins/broken.sidecar.toml"
    broken.write_text("command = [")
    report = await reloader.apply([broken])
    assert "Invalid value" in report.failed["domains/lab/plugins/broken.sidecar.toml"].message
    assert lab.plugin("lab.broken").status == "failed"
    notes = lab.root / "domains/lab/notes.txt"
    notes.write_text("not a program")
    elsewhere = lab.root / "domains/other/data.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("x")
    report = await reloader.apply([notes, elsewhere])
    assert report.applied == [] and report.failed == {}
    assert lab.plugin().details["pid"] == pid  # none of it restarted the program
