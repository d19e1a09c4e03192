"""Helpers: an event bus running on a fake kernel inside the test's task group.

``new_bus`` is the bus contract: every test that uses it runs once per driver,
in-process (``memory``) and over NATS (``nats``, each test on its own JetStream
stream, deleted afterwards), so a driver cannot drift from the contract.
``new_memory_bus`` is for what only the in-process bus promises (a publisher
held back by a slow subscriber, drain finishing the events that handlers
publish). NATS is found at ``MICROCORE_TEST_NATS`` (default
``nats://127.0.0.1:4222``); when it does not answer the NATS runs skip, and
fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from microcore import Event
from microcore.tooling import Owner
from tests.support import NATS_URL, FakeKernel, delete_stream, eventually, free_port
from tests.tools.conftest import require_service
from tools.config.config_tool import ConfigTool
from tools.event_bus import EventBus
from tools.event_bus._fanout import Subscription
from tools.event_bus.event_bus_tool import EventBusTool
from tools.event_bus.memory import MemoryBackend
from tools.event_bus.nats import NatsBackend  # imported with the rest of the bus (_pin_tools)

# This repository's tool modules, as the tests imported them.
_TOOLS = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == "tools"}

DRIVERS = ("memory", "nats")

BusFactory = Callable[..., AbstractAsyncContextManager[EventBusTool]]
"""``async with new_bus(EVENT_BUS_BUFFER=4) as bus:`` (settings as keyword arguments)."""


class PluginFactory(Protocol):
    """``make_plugin(bus, "shop.A", active=True)``."""

    def __call__(
        self, bus: EventBusTool, identity: str = ..., *, active: bool = ...
    ) -> EventBus: ...


class Until(Protocol):
    """``await until(lambda: cond)``."""

    def __call__(
        self, condition: Callable[[], object], *, timeout: float = ...
    ) -> Awaitable[None]: ...


@asynccontextmanager
async def running_bus(db: Any = None, **settings: Any) -> AsyncIterator[EventBusTool]:
    """A set-up bus (``db``: what the bus tool receives as its ``db`` tool, for the outbox);
    drained and shut down on exit."""
    _pin_tools()
    async with anyio.create_task_group() as tg:
        kernel = FakeKernel({k: str(v) for k, v in settings.items()}, tg)
        bus = EventBusTool(ConfigTool(kernel), kernel, db=db)
        await bus.setup()
        try:
            yield bus
        finally:
            with anyio.CancelScope(shield=True):
                await bus.drain()
                await bus.shutdown()
            tg.cancel_scope.cancel()


def _pin_tools() -> None:
    """Point ``tools.*`` back at this repository's modules.

    A test that boots a throwaway project re-points the ``tools`` package at the
    project's copy; the bus imports its NATS driver lazily, and must get the one
    that shares classes (errors, Fanout) with what these tests imported.
    """
    sys.modules.update(_TOOLS)


def plugin(bus: EventBusTool, identity: str = "t.A", *, active: bool = True) -> EventBus:
    """A handle bound to a new owner (active unless told otherwise)."""
    owner = Owner(identity)
    if active:
        owner.activate()
    return bus.bind(owner)


class Inbox:
    """A subscriber that records what it gets; ``wait(n)`` waits for n events with a deadline."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = anyio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list[Event]:
        with anyio.fail_after(timeout):
            while len(self.events) < count:
                self._changed = anyio.Event()
                await self._changed.wait()
        return self.events


InboxFactory = Callable[[], Inbox]


async def wait_until(condition: Callable[[], object], *, timeout: float = 5.0) -> None:
    """Wait for ``condition()`` with a deadline, re-checking on every scheduler turn."""
    await eventually(condition, timeout=timeout, interval=0.0)


class PrivateNats:
    """A nats-server of the test's own (JetStream, a free port, a store directory):
    stopped with SIGTERM or SIGKILL and started again on the same port and storage."""

    def __init__(self, binary: str, store: Path) -> None:
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` and wait for the server to exit (SIGTERM: a clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)

    async def serving(self, timeout: float = 10.0) -> None:
        """Wait until the server accepts connections."""

        with anyio.fail_after(timeout):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", self.port)).aclose()
                    return
                except OSError:
                    await anyio.sleep(0.02)  # the polling interval of a bounded wait


def nats_server_binary() -> str:
    """The nats-server to run privately; skips without one (fails under CI=true)."""
    binary = shutil.which("nats-server") or shutil.which("/usr/sbin/nats-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server is not installed; CI=true runs every NATS fault test")
        pytest.skip("nats-server is not installed (needed to restart a NATS of the test's own)")
    return binary


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    """A started :class:`PrivateNats`; killed at the end of the test."""
    server = PrivateNats(nats_server_binary(), tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture
def need_nats() -> str:
    """The NATS URL for tests; skips (fails under CI=true) when NATS does not answer."""
    require_service("NATS", NATS_URL, 4222)
    return NATS_URL


@pytest.fixture
async def nats_stream(need_nats: str) -> AsyncIterator[dict[str, str]]:
    """Settings for a bus on NATS with a stream (and subject root) of this test's own."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield {"EVENT_BUS_URL": need_nats, "EVENT_BUS_STREAM": name}
    finally:
        await delete_stream(name)


@pytest.fixture
def nats_bus(nats_stream: dict[str, str]) -> BusFactory:
    """``async with nats_bus(...) as bus:`` a bus on NATS; several of them are replicas."""

    def factory(**settings: Any) -> AbstractAsyncContextManager[EventBusTool]:
        return running_bus(**{**nats_stream, **settings})

    return factory


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """The bus driver a contract test runs on."""
    return str(request.param)


@pytest.fixture
def new_bus(driver: str, request: pytest.FixtureRequest) -> BusFactory:
    """``async with new_bus(EVENT_BUS_BUFFER=4) as bus:`` a running bus, on each driver.

    On NATS every bus of one test shares the test's stream, so two buses are two replicas.
    """
    base: dict[str, str] = {}
    if driver == "nats":
        base = request.getfixturevalue("nats_stream")

    def factory(**settings: Any) -> AbstractAsyncContextManager[EventBusTool]:
        return running_bus(**{**base, **settings})

    return factory


@pytest.fixture
def make_bus() -> BusFactory:
    """``async with make_bus(EVENT_BUS_URL=...) as bus:`` a bus with exactly these settings."""
    return running_bus


@pytest.fixture
def new_memory_bus() -> BusFactory:
    """``async with new_memory_bus(...) as bus:`` the in-process bus only."""
    return running_bus


@pytest.fixture
def make_plugin() -> PluginFactory:
    """``make_plugin(bus, "shop.A", active=True)``: a plugin's handle on ``bus``."""
    return plugin


@pytest.fixture
def inbox() -> InboxFactory:
    """``inbox()``: a recording async handler with ``await box.wait(n)``."""
    return Inbox


@pytest.fixture
def until() -> Until:
    """``await until(lambda: cond)``: wait for a condition with a deadline."""
    return wait_until


def backend_of(bus: EventBusTool) -> MemoryBackend | NatsBackend:
    """The backend ``bus`` runs on (white-box tests)."""
    backend = bus._router.backend
    assert isinstance(backend, MemoryBackend | NatsBackend)
    return backend


def nats_backend_of(bus: EventBusTool) -> NatsBackend:
    """The NATS backend of a bus on NATS (white-box tests)."""
    backend = bus._router.backend
    assert isinstance(backend, NatsBackend)
    return backend


def subscription_of(bus: EventBusTool, identity: str, pattern: str) -> Subscription:
    """The bus's subscription of plugin ``identity`` to ``pattern`` (white-box tests)."""
    for subs in bus._router.owned.values():
        for sub in subs:
            if sub.identity == identity and sub.pattern == pattern:
                return sub
    raise AssertionError(f"no subscription {identity} {pattern}")
