"""pytest plugin: boot the real app inside the test's event loop.

Loaded automatically (entry point ``pytest11``) for async tests with
pytest-asyncio. Every test gets its own app: a fresh in-memory database, memory
bus and memory state, nothing shared with the test before. Fixtures:

* ``app``: the project at the pytest root (override ``microcore_root`` to pick
  another folder, ``microcore_settings`` to add settings), booted for one test;
* ``client``: an ``httpx.AsyncClient`` over that app;
* ``events``: every event published while the test runs, and ``wait_for``.

>>> async def test_create(client, events):
...     response = await client.post("/products", json={"name": "Pen", "price": 2.5})
...     assert response.status_code == 201
...     event = await events.wait_for("product.created", timeout=1.0)
...     assert event.payload["id"] == response.json()["id"]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from ._app import MicroCoreApp, running
from ._contracts import EventSource
from ._core import logs as _logging
from ._core.errors import DependencyError
from ._core.event import Event
from ._core.kernel import Kernel
from ._dev.manifest import BOOT_SETTINGS
from ._names import matches

__all__ = (
    "START_TIMEOUT",
    "TEST_SETTINGS",
    "EventRecorder",
    "Kernel",
    "RunningApp",
    "record_events",
    "running",
    "start_app",
)

TEST_SETTINGS: Mapping[str, str] = BOOT_SETTINGS
"""In-memory database, memory bus and state, development mode, no reloader."""

START_TIMEOUT = 120.0
"""How long :meth:`RunningApp.start` waits for the boot: longer than one hook may take
(``MICROCORE_HOOK_TIMEOUT``, 30 s by default), so a hanging hook fails its tool or plugin
and the app still boots, as it would in production."""


class RunningApp:
    """A kernel booted in a background task of the current event loop.

    Setup and teardown of async fixtures may run in different tasks, while the
    kernel's task group must be entered and left in one: so it gets its own.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.app = MicroCoreApp(kernel)
        self._stop = asyncio.Event()
        self._booted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _main(self) -> None:
        try:
            async with self.kernel.run():
                self._booted.set()
                await self._stop.wait()
        finally:
            self._booted.set()

    async def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Boot the kernel; raise its boot error, or ``TimeoutError`` after ``timeout`` s.

        When it does not come up (an error, the timeout, or cancellation), the boot is
        cancelled and its task awaited first: nothing keeps running after ``start`` fails.
        """
        task = self._task = asyncio.create_task(self._main(), name="microcore-test-app")
        try:
            await asyncio.wait_for(self._booted.wait(), timeout)
            if task.done():
                task.result()  # boot failed: raise its error here
        except BaseException:
            self._task = None
            task.cancel()
            await asyncio.wait([task])  # its shutdown runs, shielded, before we go on
            raise

    async def stop(self, *, timeout: float = 30.0) -> None:
        if self._task is None:
            return
        self._stop.set()
        await asyncio.wait_for(self._task, timeout)
        self._task = None


async def start_app(
    root: Path | str,
    *,
    settings: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunningApp:
    """Boot the project in ``root`` with test settings (plus ``settings``); stop it when done."""
    running = RunningApp(
        Kernel(root, environ=environ, overrides={**TEST_SETTINGS, **(settings or {})})
    )
    await running.start()
    return running


class EventRecorder:
    """The events published on the app's bus since the ``events`` fixture started.

    ``published`` lists them in publish order (events published while the app
    booted included); :meth:`wait_for` returns the next one with a name.
    """

    def __init__(self) -> None:
        self.published: list[Event] = []
        self._returned: set[str] = set()
        self._arrived = anyio.Event()

    def record(self, event: Event) -> None:
        """Add a published event (the bus calls this through its ``tap``)."""
        self.published.append(event)
        self._arrived.set()

    def names(self) -> list[str]:
        """The names of the published events, in publish order."""
        return [e.name for e in self.published]

    async def wait_for(self, name: str, timeout: float = 1.0) -> Event:
        """The first event named ``name`` (or matching the pattern) not returned before.

        Returns at once when it was already published; raises ``TimeoutError``
        naming what was published when none comes within ``timeout`` seconds.

        >>> event = await events.wait_for("product.created", timeout=1.0)
        """
        with anyio.move_on_after(timeout):
            while True:
                for event in self.published:
                    if event.id not in self._returned and matches(name, event.name):
                        self._returned.add(event.id)
                        return event
                if self._arrived.is_set():  # keep an unset one: other waiters may hold it
                    self._arrived = anyio.Event()
                await self._arrived.wait()
        seen = ", ".join(self.names()) or "nothing"
        raise TimeoutError(f"no event {name!r} was published within {timeout} s; published: {seen}")


def record_events(kernel: Kernel) -> tuple[EventRecorder, Callable[[], object]]:
    """Attach a recorder to the running app's ``event_bus``; returns it and the detach function."""
    bus = kernel.tool("event_bus")
    if not isinstance(bus, EventSource):
        raise DependencyError(
            f"the event_bus tool ({type(bus).__name__}) is no EventSource (tap, history, "
            "flows), which the events fixture needs to see published events"
        )
    recorder = EventRecorder()
    for event in bus.history():
        recorder.record(event)
    return recorder, bus.tap(recorder.record)


@pytest.fixture
def microcore_root(request: pytest.FixtureRequest) -> Path:
    """The project the ``app`` fixture boots: the pytest root. Override to test another."""
    return Path(str(request.config.rootpath))


@pytest.fixture
def microcore_settings() -> dict[str, str]:
    """Extra settings for the ``app`` fixture (over the test settings). Override to add some."""
    return {}


@pytest_asyncio.fixture
async def app(
    microcore_root: Path, microcore_settings: dict[str, str]
) -> AsyncIterator[RunningApp]:
    """The project booted for one test with an in-memory database and the memory bus."""
    running = await start_app(microcore_root, settings=microcore_settings)
    try:
        yield running
    finally:
        try:
            await running.stop()
        finally:
            _logging.reset()  # the next test configures logging against its own captured stderr


@pytest_asyncio.fixture
async def client(app: RunningApp) -> AsyncIterator[Any]:
    """An ``httpx.AsyncClient`` over ``app`` (base URL ``http://testserver``)."""
    import httpx

    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest_asyncio.fixture
async def events(app: RunningApp) -> AsyncIterator[EventRecorder]:
    """Every event the app publishes during the test; ``await events.wait_for(name)``."""
    recorder, remove = record_events(app.kernel)
    try:
        yield recorder
    finally:
        remove()
