"""The protocol's edges, with a sidecar written by hand in Python (no client library)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from microcore.tooling import RequestTimeout
from tests.support import present
from tests.tools.sidecar.conftest import Boot, Lab

HERE = Path(__file__).parent


def raw_files(mode: str, *, command: str | None = None, cwd: str = ".") -> dict[str, str]:
    program = command or f'["{sys.executable}", "raw_sidecar.py"]'
    return {
        "domains/lab/plugins/raw.sidecar.toml": f"""
command = {program}
cwd = "{cwd}"

[env]
MODE = "{mode}"

[declares]
routes = [
    "GET /raw/bytes", "GET /raw/empty", "GET /raw/bad-status", "GET /raw/bad-shape",
    "GET /raw/typed", "GET /raw/typed-bad",
]
subscribes = ["raw.ping"]
""",
        "domains/lab/plugins/raw_sidecar.py": (HERE / "raw_sidecar.py").read_text(),
    }


def raw(lab: Lab) -> object:
    return lab.plugin("lab.raw")


async def test_sidecar_answers_map_to_responses(boot: Boot) -> None:
    """Bytes, an empty answer with its status, and malformed answers (a bad status, an
    unknown field) are 500s with an error id."""
    lab = await boot(files=raw_files("answers"))
    data = await lab.client.get("/raw/bytes")
    assert (data.status_code, data.content) == (200, b"\x00\x01\x02")
    assert data.headers["content-type"] == "application/octet-stream"
    assert data.headers["x-kind"] == "bytes"
    empty = await lab.client.get("/raw/empty")
    assert (empty.status_code, empty.content) == (202, b"")
    for path in ("/raw/bad-status", "/raw/bad-shape"):
        bad = await lab.client.get(path)
        assert bad.status_code == 500
        assert bad.json()["error"]["id"]


async def test_sidecar_route_fields_are_validated_and_documented(boot: Boot) -> None:
    """A route's declared fields are converted and checked before the program sees the
    request (422 naming the field) and documented in /openapi.json; a field of an unknown
    type is refused at registration."""
    lab = await boot(files=raw_files("answers"))
    typed = await lab.client.get("/raw/typed", params={"n": "7"})
    assert typed.json() == {"n": 7, "tag": None}
    bad = await lab.client.get("/raw/typed", params={"n": "seven"})
    assert (bad.status_code, bad.json()["error"]["path"]) == (422, "$.n")
    spec = (await lab.client.get("/openapi.json")).json()
    parameters = spec["paths"]["/raw/typed"]["get"]["parameters"]
    assert {(p["name"], p["required"]) for p in parameters} == {("n", True), ("tag", False)}
    assert "422" in spec["paths"]["/raw/typed"]["get"]["responses"]
    assert (await lab.client.get("/raw/typed-bad")).status_code == 404


async def test_sidecar_event_errors_and_replies(boot: Boot) -> None:
    """A subscriber's reply answers a request; its error fails the delivery (logged, dead
    letter) without touching the publisher."""
    lab = await boot(files=raw_files("answers"))
    assert await lab.probe.request("raw.ping", {"n": 1}) == {"pong": {"n": 1}}
    await lab.probe.publish("raw.ping", {"fail": True})
    dead = await lab.published("_dlq.raw.ping")
    assert dead.payload["subscriber"] == "lab.raw"
    assert "failed on purpose" in dead.payload["error"]


async def test_sidecar_survives_noise_and_bad_messages(
    capsys: pytest.CaptureFixture[str], boot: Boot
) -> None:
    """Stray output is logged, bad messages are answered with an error when they carry an id,
    a protocol mismatch is refused, an undeclared responder is refused naming the key; every
    line is logged under the sidecar's identity."""
    lab = await boot(files=raw_files("noise"), settings={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"})
    assert lab.plugin("lab.raw").status == "ok"
    await lab.running.stop()  # while capsys still captures the shutdown lines
    logs = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    mine = [entry for entry in logs if entry.get("plugin") == "lab.raw"]
    events = {(entry["event"], entry.get("line", "")[:40]) for entry in mine}
    assert ("sidecar_stdout", "a stray print") in events
    assert ("sidecar_stderr", "hello answered protocol_mismatch") in events
    assert ("sidecar_stderr", "welcome lab.raw") in events
    assert any(e == "sidecar_bad_message" for e, _ in events)
    assert any(
        e == "sidecar_stderr" and line.startswith("refused 'not.declared' is not declared")
        for e, line in events
    )
    assert any(entry["event"] == "sidecar_unexpected_reply" for entry in mine)
    odd = next(entry for entry in mine if entry["event"] == "odd level")
    assert (odd["level"], odd["n"]) == ("info", 1)
    assert all(isinstance(entry["pid"], int) for entry in mine if entry["event"] != "sidecar_ready")


async def test_sidecar_that_never_says_ready_fails_in_time(boot: Boot) -> None:
    """A program that never says ready is stopped after SIDECAR_READY_TIMEOUT and shows
    failed, naming the setting; its registrations never served."""
    lab = await boot(files=raw_files("silent"), settings={"SIDECAR_READY_TIMEOUT": "1"})
    status = lab.plugin("lab.raw")
    assert status.status == "failed"
    assert "not ready within 1 s (SIDECAR_READY_TIMEOUT)" in status.error.message
    assert (await lab.client.get("/raw/empty")).status_code == 404


async def test_sidecar_line_over_the_limit_ends_it(boot: Boot) -> None:
    """A protocol line over SIDECAR_MAX_LINE ends the run with an error saying so."""
    lab = await boot(files=raw_files("long"), settings={"SIDECAR_MAX_LINE": "1024"})
    status = lab.plugin("lab.raw")
    assert status.status == "failed"
    assert "longer than 1024 bytes (SIDECAR_MAX_LINE)" in status.error.message


async def test_sidecar_ignoring_stop_is_killed_within_the_deadline(boot: Boot) -> None:
    """A program that ignores its stdin closing and SIGTERM gets SIGKILL: shutdown ends
    within SIDECAR_STOP_TIMEOUT."""
    import time

    lab = await boot(files=raw_files("stubborn"), settings={"SIDECAR_STOP_TIMEOUT": "1"})
    pid = lab.plugin("lab.raw").details["pid"]
    started = time.monotonic()
    await lab.running.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


async def test_sidecar_declaration_problems_show_as_failed_plugins(boot: Boot) -> None:
    """A declaration that cannot be read, a program that cannot start and a missing folder
    show as failed plugins naming why; the rest of the app serves."""
    files = {
        **raw_files("answers", command='["no-such-program-4711"]'),
        "domains/lab/plugins/nodir.sidecar.toml": 'command = "x"\ncwd = "missing"\n',
        "domains/lab/plugins/empty.sidecar.toml": "command = []\n",
        "domains/lab/plugins/typo.sidecar.toml": 'command = "x"\ncomand = "y"\n',
    }
    lab = await boot(files=files)
    plugins = lab.kernel.status().plugins
    assert "cannot start no-such-program-4711" in present(plugins["lab.raw"].error).message
    assert "cwd 'missing' is not a folder" in present(plugins["lab.nodir"].error).message
    assert "command is empty" in present(plugins["lab.empty"].error).message
    assert "comand" in present(plugins["lab.typo"].error).message
    assert plugins["lab.typo"].details == {"kind": "sidecar", "state": "invalid"}
    assert plugins["lab.worker"].status == "ok"
    health = await lab.client.get("/system/health")
    assert health.status_code == 503
    assert "lab.raw" in health.json()["plugins"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("SIDECAR_READY_TIMEOUT", "0", "SIDECAR_READY_TIMEOUT must be a positive number"),
        ("SIDECAR_MAX_LINE", "10", "SIDECAR_MAX_LINE must be at least 1024 bytes"),
    ],
)
async def test_sidecar_bad_settings_fail_the_tool(
    boot: Boot, key: str, value: str, message: str
) -> None:
    """A bad setting fails the tool at set-up with a message naming it."""
    lab = await boot(settings={key: value})
    tool = lab.kernel.status().tools["sidecar"]
    assert tool.status == "failed"
    assert tool.error is not None and message in tool.error.message


def test_request_timeout_is_a_timeout() -> None:
    """A sidecar that does not answer in time raises the bus's RequestTimeout (504)."""
    assert issubclass(RequestTimeout, TimeoutError)
