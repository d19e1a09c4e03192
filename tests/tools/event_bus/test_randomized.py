"""Randomized interleavings of publishes, (un)subscribes, unloads, failures and timeouts.

Three concurrent actors drive one bus with a tiny buffer (backpressure) and a short
delivery deadline. A model (independent of the bus's trie) records which
subscriptions were surely active during each publish. After a drain:

* no lost event: every such (subscription, event) was completed or dead-lettered;
* no duplicate: a subscription completed an event at most once and never called its
  handler more than ``retries + 1`` times for it; nothing reached a subscription
  that was surely inactive;
* exact outcomes: each handler kind ends as it must (done, or dead letter);
* order: per subscription, each actor's events started in that actor's order;
* no hang: the whole run is bounded by a deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import structlog

from microcore import Event
from microcore.tooling import NoResponder, Owner, RequestTimeout
from tests.tools.event_bus.conftest import BusFactory, backend_of
from tools.event_bus import RequestFailed

NAMES = ["a.b", "a.c", "b.c.d", "a.b.c"]
PATTERNS = ["a.b", "a.*", "a.>", "*.b", "b.>", "*.c.d", "a.b.c"]
KINDS = ["ok", "slow", "flaky", "fail", "hang"]


def matches(pattern: str, name: str) -> bool:
    """Reference matcher: plain token walk."""
    p, n = pattern.split("."), name.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(n) > i
        if i >= len(n) or (token != "*" and token != n[i]):
            return False
    return len(p) == len(n)


@dataclass
class Sub:
    key: int
    identity: str
    pattern: str
    kind: str
    retries: int
    handler: Any = None
    active_from: int = 0  # clock when subscribe returned
    active_until: int | None = None  # clock when unsubscribe/unload started
    calls: dict[str, int] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    first_calls: list[tuple[int, int]] = field(default_factory=list)  # (actor, seq)


@dataclass
class Published:
    event_id: str
    name: str
    started: int
    finished: int
    complete: bool = True  # False: a request that may not have reached every responder


class Model:
    def __init__(self) -> None:
        self.clock = 0
        self.subs: list[Sub] = []
        self.published: list[Published] = []
        self.owners: dict[str, tuple[Owner, Any]] = {}
        self.next_key = 0

    def tick(self) -> int:
        self.clock += 1
        return self.clock


def make_handler(sub: Sub) -> Any:
    async def handler(event: Event) -> Any:
        count = sub.calls.get(event.id, 0) + 1
        sub.calls[event.id] = count
        if count == 1:
            sub.first_calls.append((event.payload["actor"], event.payload["seq"]))
        if sub.kind == "slow":
            await anyio.sleep(0.001)
        elif sub.kind == "fail" or (sub.kind == "flaky" and count == 1):
            raise RuntimeError(f"{sub.kind} {sub.key}")
        elif sub.kind == "hang" and count == 1:
            await anyio.sleep_forever()
        sub.completed[event.id] = sub.completed.get(event.id, 0) + 1
        return {"by": sub.key}

    handler.__qualname__ = f"handler_{sub.key}"
    return handler


def outcome(sub: Sub) -> tuple[bool, int]:
    """(completes?, handler calls) for one event delivered to ``sub``."""
    if sub.kind in ("ok", "slow"):
        return True, 1
    if sub.kind in ("flaky", "hang"):
        return (True, 2) if sub.retries >= 1 else (False, 1)
    return False, sub.retries + 1


async def actor(bus: Any, model: Model, rng: random.Random, number: int, ops: int) -> None:
    for seq in range(ops):
        roll = rng.random()
        if roll < 0.45:
            await publish(bus, model, rng, number, seq)
        elif roll < 0.65 or not model.subs:
            await subscribe(bus, model, rng)
        elif roll < 0.78:
            await request(bus, model, rng, number, seq)
        elif roll < 0.92:
            live = [s for s in model.subs if s.active_until is None]
            if live:
                sub = rng.choice(live)
                sub.active_until = model.tick()
                _, handle = model.owners[sub.identity]
                await handle.unsubscribe(sub.pattern, sub.handler)
        else:
            await unload(model, rng)


async def publish(bus: Any, model: Model, rng: random.Random, number: int, seq: int) -> None:
    name = rng.choice(NAMES)
    handle = bus.bind(_active(f"pub.Actor{number}"))
    started = model.tick()
    event_id = await handle.publish(name, {"actor": number, "seq": seq})
    model.published.append(Published(event_id, name, started, model.tick()))


async def request(bus: Any, model: Model, rng: random.Random, number: int, seq: int) -> None:
    name = rng.choice(NAMES)
    handle = bus.bind(_active(f"pub.Actor{number}"))
    seen: list[Event] = []
    remove = bus.tap(seen.append)
    started = model.tick()
    complete = True  # queued to every responder; only these outcomes prove it
    try:
        reply = await handle.request(name, {"actor": number, "seq": seq}, timeout=0.03)
    except NoResponder:
        reply = "none"
    except RequestFailed:
        reply = None
    except RequestTimeout:  # may have expired while queueing behind a full buffer
        reply, complete = None, False
    finally:
        remove()
    if isinstance(reply, dict):
        complete = False  # a reply can arrive before the request reached every responder
    model.published.append(Published(seen[0].id, name, started, model.tick(), complete))
    if isinstance(reply, dict):
        (sub,) = [s for s in model.subs if s.key == reply["by"]]
        assert matches(sub.pattern, name)


async def subscribe(bus: Any, model: Model, rng: random.Random) -> None:
    identity = f"plug.P{rng.randrange(4)}"
    if identity not in model.owners:
        owner = _active(identity)
        model.owners[identity] = (owner, bus.bind(owner))
    _, handle = model.owners[identity]
    model.next_key += 1
    sub = Sub(model.next_key, identity, rng.choice(PATTERNS), rng.choice(KINDS), rng.randrange(3))
    sub.handler = make_handler(sub)
    await handle.subscribe(sub.pattern, sub.handler, retries=sub.retries)
    sub.active_from = model.tick()
    model.subs.append(sub)


async def unload(model: Model, rng: random.Random) -> None:
    if not model.owners:
        return
    identity = rng.choice(sorted(model.owners))
    owner, _ = model.owners.pop(identity)
    now = model.tick()
    for sub in model.subs:
        if sub.identity == identity and sub.active_until is None:
            sub.active_until = now
    await owner.release()


def _active(identity: str) -> Owner:
    owner = Owner(identity)
    owner.activate()
    return owner


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
async def test_random_interleavings_lose_nothing_and_deliver_once(
    seed: int, new_memory_bus: BusFactory
) -> None:
    """Seeded random runs: no lost event, no duplicate delivery, exact outcomes, no hang."""
    rng = random.Random(seed)
    model = Model()
    dead: list[Event] = []
    settings = {
        "EVENT_BUS_BUFFER": 4,
        "EVENT_BUS_DELIVERY_TIMEOUT": 0.02,
        "EVENT_BUS_RETRY_BACKOFF": 0.001,
        "EVENT_BUS_DRAIN_TIMEOUT": 10,
    }
    # logs captured: rendering failures' tracebacks to the console takes longer than the
    # 20 ms delivery deadline on a loaded machine, and would time out the "slow" handlers
    with anyio.fail_after(30), structlog.testing.capture_logs():
        async with new_memory_bus(**settings) as bus:
            bus.tap(lambda e: dead.append(e) if e.name.startswith("_dlq.") else None)
            async with anyio.create_task_group() as tg:
                for number in range(3):
                    tg.start_soon(actor, bus, model, random.Random(rng.random()), number, 100)
            await bus.drain()
            assert backend_of(bus).waiting == set()
            assert bus._router.fanout.outstanding == 0

    letters: dict[tuple[str, str], int] = {}
    for letter in dead:
        key = (letter.payload["subscriber"], letter.payload["event"]["id"])
        letters[key] = letters.get(key, 0) + 1
    expected_letters: dict[tuple[str, str], int] = {}
    checked = 0
    for sub in model.subs:
        completes, calls = outcome(sub)
        for pub in model.published:
            surely = (
                pub.complete
                and matches(sub.pattern, pub.name)
                and sub.active_from < pub.started
                and (sub.active_until is None or pub.finished < sub.active_until)
            )
            maybe = matches(sub.pattern, pub.name) and (
                sub.active_until is None or pub.started < sub.active_until
            )
            got_calls = sub.calls.get(pub.event_id, 0)
            got_done = sub.completed.get(pub.event_id, 0)
            assert got_done <= 1, f"duplicate delivery of {pub} to {sub}"
            assert got_calls <= sub.retries + 1, f"too many calls of {pub} to {sub}"
            if not maybe:
                assert got_calls == 0, f"{pub} reached inactive {sub}"
            if surely:
                checked += 1
                assert got_calls == calls, f"lost or cut short: {pub} to {sub}"
                assert got_done == (1 if completes else 0)
                if not completes:
                    key = (sub.identity, pub.event_id)
                    expected_letters[key] = expected_letters.get(key, 0) + 1
            elif got_calls and not completes and got_calls == calls:
                key = (sub.identity, pub.event_id)
                expected_letters[key] = expected_letters.get(key, 0) + 1
        for number in range(3):
            seqs = [seq for who, seq in sub.first_calls if who == number]
            assert seqs == sorted(seqs), f"out of order for {sub}"
    assert letters == expected_letters
    assert checked > 30, checked  # the run exercised real deliveries
