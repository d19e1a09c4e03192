"""A sidecar that speaks the protocol by hand (no client library), misbehaving on request.

``MODE`` picks the misbehaviour: ``noise`` (stray output and bad messages before a proper
start), ``stubborn`` (ignores stdin closing and SIGTERM), ``long`` (a line over the limit),
``silent`` (never says ready), ``answers`` (odd answers to http messages).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

MODE = os.environ.get("MODE", "")


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def receive() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        if MODE == "stubborn":
            signal.pause()  # ignore the closed stdin; SIGTERM is ignored too: only SIGKILL ends it
        sys.exit(0)
    message: dict[str, Any] = json.loads(line)
    return message


def call(message: dict[str, Any]) -> dict[str, Any]:
    send(message)
    while True:
        answer = receive()
        if answer.get("id") == message["id"]:
            return answer


ANSWERS: dict[str, Any] = {
    "/raw/bytes": {"body_base64": "AAEC", "headers": {"x-kind": "bytes"}},
    "/raw/empty": {"status": 202},
    "/raw/bad-status": {"status": 99},
    "/raw/bad-shape": {"stauts": 200},
}


def main() -> None:
    if MODE == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if MODE == "long":
        send({"type": "log", "message": "x" * 4096})
    if MODE == "noise":
        sys.stdout.write("a stray print\n\n")
        send({"type": "nonsense", "id": 1})
        send({"type": "nonsense"})
        sys.stdout.write("{not json\n")
        send({"type": "result", "id": "k999", "result": None})
        send({"type": "log", "level": "shout", "message": "odd level", "fields": {"n": 1}})
        sys.stderr.write("x" * 70000 + "\n")
        sys.stderr.flush()
        mismatch = call({"type": "hello", "id": 2, "protocol": 99})
        sys.stderr.write(f"hello answered {mismatch['error']['code']}\n")
        sys.stderr.flush()
    welcome = call({"type": "hello", "id": "h", "protocol": 1})
    sys.stderr.write(f"welcome {welcome['result']['identity']}\n")
    sys.stderr.flush()
    for path in ANSWERS:
        call({"type": "route", "id": path, "method": "GET", "path": path})
    typed = {"n": "int", "tag": "str?"}
    call({"type": "route", "id": "t", "method": "GET", "path": "/raw/typed", "fields": typed})
    untyped = {"type": "route", "id": "u", "method": "GET", "path": "/raw/typed-bad"}
    refused_type = call({**untyped, "fields": {"n": "decimal"}})
    sys.stderr.write(f"refused {refused_type['error']['message']}\n")
    call({"type": "subscribe", "id": "s", "pattern": "raw.ping"})
    refused = call({"type": "respond", "id": "r", "name": "not.declared"})
    sys.stderr.write(f"refused {refused['error']['message']}\n")
    sys.stderr.flush()
    if MODE == "silent":
        while True:
            receive()
    call({"type": "ready", "id": "ready"})
    while True:
        message = receive()
        if message["type"] == "http" and message["route"] == "/raw/typed":
            send({"type": "result", "id": message["id"], "result": {"json": message["data"]}})
        elif message["type"] == "http":
            send({"type": "result", "id": message["id"], "result": ANSWERS[message["route"]]})
        elif message["type"] == "event":
            payload = message["event"]["payload"]
            if payload.get("fail"):
                error = {"code": "nope", "message": "failed on purpose"}
                send({"type": "error", "id": message["id"], "error": error})
            else:
                send({"type": "result", "id": message["id"], "result": {"pong": payload}})


if __name__ == "__main__":
    main()
