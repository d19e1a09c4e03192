"""Ownership: everything a plugin registers through a tool belongs to that plugin.

A tool records each registration on the plugin's :class:`Owner` together with a
release callback. Unloading the plugin (failure, reload, shutdown) releases all
of them, newest first, so a plugin can never leave a route or a subscription
behind. Hot reload builds on the owner's states:

* ``pending``: the plugin is booting; tools keep its registrations invisible.
* ``active``: committed by the kernel; its registrations serve.
* ``released``: unloaded; its registrations are gone.

Tools also tell the owner when they call into the plugin (``enter``/``leave``
around a handler call), so an unloaded version is shut down only once the calls
it was already serving have finished (:meth:`Owner.wait_idle`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from enum import StrEnum

import anyio
import structlog

__all__ = ("Owner", "OwnerState", "Registration", "Release")

Release = Callable[[], Awaitable[None] | None]

_log = structlog.get_logger("microcore")


class OwnerState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RELEASED = "released"


class Registration:
    """What registering through a tool returns (a route, a subscription, a job, ...)."""

    __slots__ = ("_release", "kind", "label", "owner")

    def __init__(self, owner: Owner, kind: str, label: str, release: Release) -> None:
        self.owner = owner
        self.kind = kind
        self.label = label
        self._release: Release | None = release

    @property
    def released(self) -> bool:
        return self._release is None

    async def release(self) -> None:
        """Undo the registration now (idempotent), e.g. for ``unsubscribe``."""
        release, self._release = self._release, None
        if release is None:
            return
        self.owner._forget(self)
        result = release()
        if inspect.isawaitable(result):
            await result

    def __repr__(self) -> str:
        return f"<Registration {self.kind} {self.label!r} of {self.owner.identity}>"


class Owner:
    """The ledger of one loaded plugin (or of the kernel itself for system routes).

    >>> owner = Owner("products.CreateProductPlugin")
    >>> reg = owner.own("route", "POST /products", release=lambda: None)
    >>> owner.labels("route")
    ['POST /products']
    """

    def __init__(self, identity: str, *, replaces: Owner | None = None) -> None:
        self.identity = identity
        self.replaces = replaces
        self.state = OwnerState.PENDING
        self._registrations: list[Registration] = []
        self.busy = 0  # calls into the plugin in progress (requests, event handlers)
        self._idle: anyio.Event | None = None

    @property
    def active(self) -> bool:
        return self.state is OwnerState.ACTIVE

    @property
    def pending(self) -> bool:
        return self.state is OwnerState.PENDING

    @property
    def released(self) -> bool:
        return self.state is OwnerState.RELEASED

    @property
    def registrations(self) -> tuple[Registration, ...]:
        return tuple(self._registrations)

    def own(self, kind: str, label: str, release: Release) -> Registration:
        """Record a registration; ``release`` undoes it (sync or async)."""
        if self.released:
            from .errors import RegistrationError

            raise RegistrationError(
                f"plugin {self.identity!r} was unloaded; it cannot register {kind} {label!r}"
            )
        registration = Registration(self, kind, label, release)
        self._registrations.append(registration)
        return registration

    def labels(self, kind: str) -> list[str]:
        """Labels of the live registrations of one kind, in registration order."""
        return [r.label for r in self._registrations if r.kind == kind]

    def enter(self) -> None:
        """A tool starts calling into the plugin (a request handler, an event handler)."""
        self.busy += 1

    def leave(self) -> None:
        """That call finished (however it ended)."""
        self.busy -= 1
        if self.busy == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Wait until no call into the plugin is in progress (bound it with a timeout)."""
        while self.busy > 0:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    def activate(self) -> None:
        if self.state is not OwnerState.PENDING:
            raise RuntimeError(f"owner {self.identity!r} is {self.state.value}, not pending")
        self.state = OwnerState.ACTIVE

    def mark_released(self) -> None:
        """Make every registration invisible at once; :meth:`release` then cleans up."""
        self.state = OwnerState.RELEASED

    async def release(self) -> list[BaseException]:
        """Release every registration, newest first; returns the errors it isolated."""
        self.state = OwnerState.RELEASED
        errors: list[BaseException] = []
        for registration in reversed(self._registrations.copy()):
            try:
                await registration.release()
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one release must not stop the rest
                _log.exception(
                    "release_failed",
                    owner=self.identity,
                    kind=registration.kind,
                    label=registration.label,
                )
                errors.append(exc)
        return errors

    def _forget(self, registration: Registration) -> None:
        self._registrations.remove(registration)  # called once: Registration.release is idempotent

    def __repr__(self) -> str:
        count = len(self._registrations)
        return f"<Owner {self.identity} {self.state.value} ({count} registrations)>"
