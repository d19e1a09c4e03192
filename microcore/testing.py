"""pytest plugin: boot the real app inside the test's event loop.

Loaded automatically (entry point ``pytest11``) for async tests with
pytest-asyncio. Every test gets its own app: a fresh in-memory database, memory
bus and memory state, nothing shared with the test before. Fixtures:

* ``app``: a :class:`RunningApp` (``app.app`` the ASGI app, ``app.kernel``),
  the project at the pytest root (override ``microcore_root`` to pick another
  folder, ``microcore_settings`` to add settings), booted for one test;
* ``client``: a :class:`TestClient` (an ``httpx.AsyncClient``) over that app, with
  ``client.sse(path)`` for endless event streams;
* ``events``: an :class:`EventRecorder`: what was published (``published``) and
  requested (``requests``), ``wait_for``, and stubs for one test
  (``stub_responder``, ``silence``, ``subscribe``).

:func:`make_event` builds an ``Event`` for a plugin unit test from a name and a payload.

>>> async def test_create(client, events):
...     response = await client.post("/products", json={"name": "Pen", "price": 2.5})
...     assert response.status_code == 201
...     event = await events.wait_for("product.created", timeout=1.0)
...     assert event.payload["id"] == response.json()["id"]
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest
import pytest_asyncio

from ._app import MicroCoreApp, running
from ._contracts import EventSource
from ._core import logs as _logging
from ._core.errors import DependencyError
from ._core.event import Event
from ._core.kernel import Kernel
from ._core.ownership import Owner
from ._dev.manifest import BOOT_SETTINGS
from ._names import matches

if TYPE_CHECKING:  # at run time on first use: httpx is a test dependency
    from ._testclient import SseMessage, SseStream, TestClient

__all__ = (
    "START_TIMEOUT",
    "TEST_SETTINGS",
    "EventRecorder",
    "Kernel",
    "RunningApp",
    "SseMessage",
    "SseStream",
    "TestClient",
    "make_event",
    "record_events",
    "running",
    "start_app",
)

T = TypeVar("T")
_ids = itertools.count(1)
_CLIENT_TYPES = ("SseMessage", "SseStream", "TestClient")


def __getattr__(name: str) -> Any:
    """``TestClient``, ``SseStream``, ``SseMessage``: imported on first use (they need httpx)."""
    if name in _CLIENT_TYPES:
        from . import _testclient

        return getattr(_testclient, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


STUB = "tests.Stub"
"""The plugin identity of what a test registers through ``events``."""

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


def make_event(
    name: str,
    payload: T,
    *,
    source: str = STUB,
    correlation_id: str | None = None,
    parent_id: str | None = None,
) -> Event[T]:
    """An ``Event`` for a test: a name and a payload; id, correlation id, time filled in.

    >>> await plugin.on_created(make_event("product.created", Product(1, "Pen", 2.5)))
    """
    event_id = f"test-{next(_ids)}"
    return Event(
        name=name,
        payload=payload,
        id=event_id,
        correlation_id=correlation_id or event_id,
        source=source,
        timestamp=time.time(),
        parent_id=parent_id,
    )


class EventRecorder:
    """The events published on the app's bus since the ``events`` fixture started.

    ``published`` lists events in publish order (those published while the app
    booted included); ``requests`` lists requests sent; :meth:`wait_for` returns
    the next event with a name. :meth:`stub_responder`, :meth:`silence` and
    :meth:`subscribe` change the bus for this test only.
    """

    def __init__(self, bus: Any = None) -> None:
        self.published: list[Event] = []
        self.requests: list[Event] = []
        self._returned: set[str] = set()
        self._arrived = anyio.Event()
        self._bus = bus
        self._owner = Owner(STUB)
        self._owner.activate()
        self._handle: Any = None
        self._restore: list[Callable[[], None]] = []

    def record(self, event: Event) -> None:
        """Add a published event (the bus calls this through its ``tap``)."""
        self.published.append(event)
        self._arrived.set()

    def record_request(self, event: Event) -> None:
        """Add a sent request (the bus calls this through its ``tap``)."""
        self.requests.append(event)

    def _stubs(self) -> Any:
        silence = getattr(self._bus, "silence", None)
        if silence is None:
            raise DependencyError(
                f"the event_bus tool ({type(self._bus).__name__}) cannot silence handlers; "
                "stubs need microcore's own event bus"
            )
        if self._handle is None:
            self._handle = self._bus.bind(self._owner)
        return self._handle

    @property
    def bus(self) -> Any:
        """An ``EventBus`` for the test itself (plugin ``tests.Stub``): publish or request
        as another domain's plugin would.

        >>> product = await events.bus.request("product.get", ProductId(7), reply=Product)
        """
        return self._stubs()

    def silence(self, name: str) -> None:
        """Until the test ends, events and requests named ``name`` reach none of the app's
        handlers (a request raises ``NoResponder``: the responder is absent).

        >>> events.silence("product.get")
        """
        self._stubs()
        self._restore.append(self._bus.silence(name, keep=self._owner))

    async def stub_responder(self, name: str, reply: Any, *, delay: float = 0.0) -> None:
        """Until the test ends, requests named ``name`` get ``reply`` (or what ``async
        reply(event)`` returns) after ``delay`` s, instead of the app's responder.
        A ``delay`` past the request's timeout simulates a slow one (504).

        >>> await events.stub_responder("product.get", Product(1, "Pen", 2.5))
        """
        handle = self._stubs()
        call = reply if inspect.iscoroutinefunction(reply) else None

        async def answer(event: Event) -> Any:
            if delay:
                await anyio.sleep(delay)
            return await call(event) if call is not None else reply

        self.silence(name)
        await handle.respond(name, answer)

    async def subscribe(self, pattern: str, handler: Any, *, retries: int = 0) -> None:
        """Subscribe ``async handler(event)`` for this test (``events.silence`` first to
        replace the app's subscriber).

        >>> await events.subscribe("product.created", failing, retries=1)
        """
        await self._stubs().subscribe(pattern, handler, retries=retries)

    async def close(self) -> None:
        """Undo the test's stubs (the fixture calls this)."""
        for restore in reversed(self._restore):
            restore()
        self._restore.clear()
        await self._owner.release()

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
    recorder = EventRecorder(bus)
    for event in bus.history():
        recorder.record(event)
    try:
        remove = bus.tap(recorder.record, only="events")  # type: ignore[call-arg]
        remove_requests = bus.tap(recorder.record_request, only="requests")  # type: ignore[call-arg]
    except TypeError:  # a bus whose tap does not tell requests from events
        return recorder, bus.tap(recorder.record)

    def detach() -> None:
        remove()
        remove_requests()

    return recorder, detach


@pytest.fixture
def microcore_root(request: pytest.FixtureRequest) -> Path:
    """The project the ``app`` fixture boots: the pytest root. Override to test another."""
    return Path(str(request.config.rootpath))


@pytest.fixture
def microcore_settings() -> dict[str, str]:
    """Extra settings for the ``app`` fixture (over the test settings). Override it in a
    test module or class (``@pytest.fixture def microcore_settings(): return {...}``), or
    per test with ``@pytest.mark.parametrize("microcore_settings", [{...}])``."""
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
async def client(app: RunningApp) -> AsyncIterator[TestClient]:
    """A :class:`TestClient` (an ``httpx.AsyncClient``) over ``app`` (base URL
    ``http://testserver``), plus ``async with client.sse("/path") as stream: await
    stream.next()`` for event streams."""
    from ._testclient import TestClient  # httpx is a test dependency

    async with TestClient(app.app) as http:
        yield http


@pytest_asyncio.fixture
async def events(app: RunningApp) -> AsyncIterator[EventRecorder]:
    """Every event the app publishes during the test; ``await events.wait_for(name)``."""
    recorder, remove = record_events(app.kernel)
    try:
        yield recorder
    finally:
        remove()
        await recorder.close()
