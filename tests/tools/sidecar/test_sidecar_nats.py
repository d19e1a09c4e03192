"""The NATS transport: any NATS client can be the sidecar, given the subjects it is told.

The Node.js client's runs over NATS are the ``[nats]`` cases of ``test_sidecar_e2e.py``;
here the test itself plays the sidecar with nats-py, speaking the protocol by hand.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

from microcore._dev.reload import Reloader
from tests.support import eventually
from tests.tools.sidecar.conftest import Boot

# The program the kernel starts: it writes what it was told, then waits for stdin to close
# (the kernel's "stop"); the test, holding those subjects, speaks the protocol over NATS.
PLACEHOLDER = """
import json, os, sys
told = {k: v for k, v in os.environ.items() if k.startswith("MICROCORE_SIDECAR")}
with open("told.json.tmp", "w") as f:
    json.dump(told, f)
os.replace("told.json.tmp", "told.json")
sys.stdin.read()
"""

EXTERNAL_TOML = f"""
doc = "A sidecar whose protocol the test speaks."
command = ["{sys.executable}", "placeholder.py"]
transport = "nats"

[declares]
routes = ["GET /ext/hello/{{name}}"]
responds = ["ext.double"]
subscribes = ["ext.ping"]
publishes = ["ext.pong"]
"""


class Peer:
    """The test as a sidecar: a nats-py connection on the run's subjects."""

    def __init__(self, told: dict[str, str]) -> None:
        self.told = told
        self.ids = 0

    async def __aenter__(self) -> Peer:
        import nats

        self.nc = await nats.connect(self.told["MICROCORE_SIDECAR_NATS_URL"])
        self.inbox = await self.nc.subscribe(self.told["MICROCORE_SIDECAR_SUBJECT_IN"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.nc.close()

    async def send(self, message: dict[str, Any]) -> None:
        subject = self.told["MICROCORE_SIDECAR_SUBJECT_OUT"]
        await self.nc.publish(subject, json.dumps(message).encode())

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads((await self.inbox.next_msg(timeout=10)).data)
        return message

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        await self.send({**message, "id": self.ids})
        answer = await self.receive()
        assert answer["id"] == self.ids
        return answer

    async def serve(self) -> None:
        """Answer the kernel's http and event messages (ext.ping publishes ext.pong)."""
        while True:
            message = await self.receive()
            if message["type"] == "http":
                reply = {"json": {"hello": message["params"]["name"], "via": "nats"}}
            elif message["type"] == "event" and message["subscription"] == "ext.double":
                reply = {"value": message["event"]["payload"]["n"] * 2}
            elif message["type"] == "event":
                n = message["event"]["payload"]["n"]
                pong = {"type": "publish", "name": "ext.pong", "payload": {"n": n}}
                await self.send({**pong, "id": f"p{n}", "cause": message["id"]})
                reply = None
            else:  # the kernel's answer to that publish
                continue
            await self.send({"type": "result", "id": message["id"], "result": reply})


async def test_any_nats_client_can_be_the_sidecar(
    boot: Boot, nats_settings: dict[str, str]
) -> None:
    """The kernel starts the declared program with the NATS URL and its subjects in the
    environment; whoever speaks the protocol there (here nats-py in the test) registers,
    says ready, and serves routes, requests and events, in the same causal chain; at
    shutdown it is sent ``stop``."""
    lab = await boot(settings=nats_settings)
    plugins = lab.root / "domains/lab/plugins"
    (plugins / "placeholder.py").write_text(PLACEHOLDER)
    toml = plugins / "external.sidecar.toml"
    toml.write_text(EXTERNAL_TOML)
    reports: list[Any] = []

    async def declare() -> None:
        reports.append(await Reloader(lab.kernel).apply([toml]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(declare)
        told_file = plugins / "told.json"
        await eventually(told_file.exists, timeout=10)
        told = json.loads(told_file.read_text())
        assert told["MICROCORE_SIDECAR"] == "lab.external"
        assert told["MICROCORE_SIDECAR_TRANSPORT"] == "nats"
        assert told["MICROCORE_SIDECAR_NATS_URL"] == nats_settings["EVENT_BUS_URL"]
        prefix = f"{nats_settings['EVENT_BUS_STREAM']}_sidecar.lab.external."
        assert told["MICROCORE_SIDECAR_SUBJECT_IN"].startswith(prefix)
        async with Peer(told) as peer:
            welcome = await peer.call({"type": "hello", "protocol": 1})
            assert welcome["result"] == {"protocol": 1, "identity": "lab.external"}
            for registration in (
                {"type": "route", "method": "GET", "path": "/ext/hello/{name}"},
                {"type": "respond", "name": "ext.double"},
                {"type": "subscribe", "pattern": "ext.ping"},
            ):
                assert (await peer.call(registration))["type"] == "result"
            refused = await peer.call({"type": "subscribe", "pattern": "not.declared"})
            assert "external.sidecar.toml" in refused["error"]["message"]
            assert (await peer.call({"type": "ready"}))["type"] == "result"
            async with anyio.create_task_group() as serving:
                serving.start_soon(peer.serve)
                await eventually(lambda: reports)
                assert reports[0].applied == ["domains/lab/plugins/external.sidecar.toml"]
                assert lab.plugin("lab.external").status == "ok"
                hello = await lab.client.get("/ext/hello/ann")
                assert hello.json() == {"hello": "ann", "via": "nats"}
                assert await lab.probe.request("ext.double", {"n": 4}) == {"value": 8}
                ping_id = await lab.probe.publish("ext.ping", {"n": 3})
                pong = await lab.published("ext.pong")
                assert (pong.payload, pong.source, pong.parent_id) == (
                    {"n": 3},
                    "lab.external",
                    ping_id,
                )
                serving.cancel_scope.cancel()
            await lab.running.stop()  # the kernel tells its NATS peer to stop
            while (message := await peer.receive()).get("type") == "result":
                pass  # the answer to its publish may still be on its way
            assert message == {"type": "stop"}


async def test_sidecar_transport_follows_the_declaration(boot: Boot) -> None:
    """Without a NATS bus, a declaration with ``transport = "nats"`` is refused saying what
    it needs, while ``"auto"`` runs over stdio; the other plugins are unharmed."""
    program = 'command = ["node", "worker.js"]\n'
    lab = await boot(
        files={
            "domains/lab/plugins/needs_nats.sidecar.toml": f'{program}transport = "nats"\n',
        }
    )
    failed = lab.plugin("lab.needs_nats")
    assert (failed.status, failed.details["state"]) == ("failed", "invalid")  # not retried
    assert 'transport = "nats" needs the event bus on NATS' in failed.error.message
    assert "needs_nats.sidecar.toml" in failed.error.message
    assert lab.plugin().status == "ok"
    toml = lab.root / "domains/lab/plugins/worker.sidecar.toml"
    toml.write_text(toml.read_text().replace('transport = "stdio"', 'transport = "auto"'))
    await Reloader(lab.kernel).apply([toml])
    assert lab.plugin().details["transport"] == "stdio"
    assert (await lab.client.get("/js/hello/ann")).json()["hello"] == "ann"
