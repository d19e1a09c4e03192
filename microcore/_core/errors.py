"""The error hierarchy: one base class, specific subclasses, messages that say how to fix."""

from __future__ import annotations

__all__ = (
    "ConfigurationError",
    "DependencyError",
    "EventNameError",
    "HookError",
    "MicroCoreError",
    "NoResponder",
    "RegistrationError",
    "RequestTimeout",
)


class MicroCoreError(Exception):
    """Base class of every error microcore raises on purpose.

    ``code`` and ``http_status`` say how the error looks when it escapes an HTTP
    handler (``http_status = None`` means a 500 with an error id). Tools give
    their own subclasses other values, e.g. a database ``IntegrityError`` is 409.
    """

    code: str = "internal_error"
    http_status: int | None = None

    @property
    def public_message(self) -> str:
        """What a client may read when this error answers an HTTP request (the full
        message by default; a subclass leaves out internals, e.g. the SQL statement)."""
        return str(self)


class ConfigurationError(MicroCoreError):
    """The project is set up in a way the app cannot start with (e.g. two tools share a name)."""


class DependencyError(MicroCoreError):
    """A plugin or tool names a dependency that cannot be injected."""


class EventNameError(MicroCoreError, ValueError):
    """An event name is malformed (empty token, wildcard, whitespace)."""

    code = "invalid_event_name"


class HookError(MicroCoreError):
    """A hook or handler has the wrong shape (e.g. a sync function where a coroutine is needed)."""


class RegistrationError(MicroCoreError):
    """A registration through a tool was refused (e.g. two plugins claim one route)."""


class NoResponder(MicroCoreError):
    """``event_bus.request`` found no subscriber for the name."""

    code = "no_responder"
    http_status = 503


class RequestTimeout(MicroCoreError, TimeoutError):
    """``event_bus.request`` got no reply within its timeout."""

    code = "timeout"
    http_status = 504
