"""One declared sidecar over its life: started, swapped in, restarted, reloaded, stopped.

A run (an :class:`~._instance.Instance`) registers under a pending owner that replaces the
serving run's; when the program says ``ready``, :meth:`Sidecar.commit` swaps them with no
await in between (the old run stops taking work, then is stopped once its calls finish).
A crash marks the sidecar failed: its subscriptions go at once, its routes answer 503 until
a new run is ready. Restarts back off from ``SIDECAR_RESTART_BACKOFF``, doubling up to
``SIDECAR_MAX_BACKOFF``; a run that stayed up ``stable_after`` seconds starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio
import structlog

from microcore.tooling import Owner
from tools.event_bus import EventBus
from tools.http import Http

from ._declaration import Declaration
from ._instance import Instance
from ._settings import SidecarSettings

__all__ = ("Host", "Sidecar")

_log = structlog.get_logger("microcore.sidecar", tool="sidecar")


class Host(Protocol):
    """What a sidecar needs of its tool."""

    settings: SidecarSettings

    def bind_http(self, owner: Owner) -> Http: ...

    def bind_bus(self, owner: Owner) -> EventBus: ...

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> None: ...

    def refresh(self) -> None: ...


class Sidecar:
    """A declaration and its runs: the serving one (``current``) and its history."""

    def __init__(self, decl: Declaration, host: Host) -> None:
        self.decl = decl
        self.host = host
        self.current: Instance | None = None
        self.restarts = 0  # runs the supervisor started after the first (crashes, failures)
        self.started = 0
        self.last_error: str | None = None  # why the last run ended or failed to start
        self.reload_error: str | None = None  # a new version failed; the old one serves
        self.loaded_at: float | None = None
        self.stopping = False
        self.first_attempt = anyio.Event()
        self.done = anyio.Event()
        self._lock = anyio.Lock()
        self._wake = anyio.Event()

    @property
    def running(self) -> bool:
        run = self.current
        return run is not None and run.committed and run.alive

    # -- supervising -----------------------------------------------------------------

    async def supervise(self) -> None:
        """Keep a run serving until :meth:`stop` (a background task)."""
        settings, delay = self.host.settings, 0.0
        try:
            while not self.stopping:
                run = self.current
                if run is not None and not run.exited.is_set():
                    since = time.monotonic()
                    await run.exited.wait()
                    if self.stopping or run is not self.current:
                        continue  # stopped, or replaced by a reload: follow the new run
                    await self._crashed(run)
                    stable = time.monotonic() - since >= settings.stable_after
                    delay = settings.backoff if stable or not delay else delay * 2
                    delay = min(delay, settings.max_backoff)
                    continue
                if delay:
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                if self.stopping:
                    break
                if await self.start(replace=False) is not None:
                    delay = min(delay * 2 if delay else settings.backoff, settings.max_backoff)
        finally:
            self.first_attempt.set()
            self.done.set()

    async def _crashed(self, run: Instance) -> None:
        self.last_error = run.error
        _log.error("sidecar_crashed", plugin=self.decl.identity, pid=run.pid, error=run.error)
        for registration in run.owner.registrations:  # its routes stay: they answer 503
            if registration.kind == "subscription":
                await registration.release()

    async def start(self, decl: Declaration | None = None, *, replace: bool = True) -> str | None:
        """Start a run of ``decl`` (else the current declaration) and swap it in once ready;
        None when it serves, else why not (the serving run, if any, keeps serving).
        ``replace=False`` does nothing while a run serves (a reload got there first)."""
        async with self._lock:
            if decl is not None:
                self.decl = decl
            if self.stopping or (not replace and self.running):
                return None
            old = self.current
            replaces = old.owner if old is not None and old.owner.active else None
            owner = Owner(self.decl.identity, replaces=replaces)
            run = Instance(
                self.decl,
                owner,
                http=self.host.bind_http(owner),
                bus=self.host.bind_bus(owner),
                settings=self.host.settings,
                commit=self.commit,
            )
            if self.started and not replace:
                self.restarts += 1
            self.started += 1
            self.host.spawn(run.run, name=f"sidecar:{self.decl.identity}")
            with anyio.move_on_after(self.host.settings.ready_timeout):
                await run.settled.wait()
            why = await self._settle(run, owner)
            self.first_attempt.set()
            return why

    async def _settle(self, run: Instance, owner: Owner) -> str | None:
        """None when ``run`` serves; else stop it, note why and return it."""
        if run.committed:
            self.reload_error = None
            return None
        run.abandoned = True
        why = run.error or f"not ready within {self.host.settings.ready_timeout:g} s"
        why += " (SIDECAR_READY_TIMEOUT)" if run.error is None else ""
        _log.error("sidecar_start_failed", plugin=self.decl.identity, error=why)
        await run.stop()
        await owner.release()
        if self.running:
            self.reload_error = why
        else:
            self.last_error = why
        return why

    def commit(self, run: Instance) -> bool:
        """Swap ``run`` in (synchronously): its registrations serve, the old run's stop."""
        if run.abandoned or self.stopping:
            return False
        old = self.current
        if old is not None:
            old.owner.mark_released()
        run.owner.activate()
        run.owner.replaces = None
        self.current = run
        self.loaded_at = time.time()
        self.host.refresh()
        _log.info("sidecar_ready", plugin=self.decl.identity, pid=run.pid)
        if old is not None:
            self.host.spawn(self._retire, old, name=f"sidecar:{self.decl.identity}:retire")
        self._wake.set()
        return True

    async def _retire(self, run: Instance) -> None:
        """Stop a replaced run once the calls it serves have finished."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.host.settings.http_timeout):
                await run.owner.wait_idle()
            await run.stop()
            await run.owner.release()

    async def stop(self) -> None:
        """Stop supervising and end the serving run (its registrations go)."""
        self.stopping = True
        self._wake.set()
        async with self._lock:  # a start in progress finishes (or gives up) first
            run = self.current
        if run is not None:
            run.owner.mark_released()
            self.host.refresh()
            await run.stop()
            await run.owner.release()
        with anyio.move_on_after(self.host.settings.stop_timeout):
            await self.done.wait()
