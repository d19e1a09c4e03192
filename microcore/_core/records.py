"""What the kernel knows about each tool and plugin it loaded (or failed to)."""

from __future__ import annotations

from pathlib import Path

from .discovery import ErrorInfo
from .injection import Dependencies
from .ownership import Owner
from .plugin import Plugin
from .tool import Tool

__all__ = ("FAILED", "OK", "PluginRecord", "ToolRecord")

OK = "ok"
FAILED = "failed"


class ToolRecord:
    """A discovered tool and how it is doing."""

    def __init__(self, name: str, file: Path, cls: type[Tool] | None = None) -> None:
        self.name = name
        self.file = file
        self.cls = cls
        self.deps = Dependencies((), ())
        self.instance: Tool | None = None
        self.status = OK
        self.error: ErrorInfo | None = None

    def fail(self, error: ErrorInfo) -> None:
        self.status, self.error = FAILED, error


class PluginRecord:
    """One loaded (or failed) plugin: its class, instance, owner and status."""

    def __init__(self, identity: str, domain: str, file: Path, cls: type[Plugin] | None) -> None:
        self.identity = identity
        self.domain = domain
        self.file = file
        self.cls = cls
        self.instance: Plugin | None = None
        self.owner = Owner(identity)
        self.tools: tuple[str, ...] = ()
        self.status = OK
        self.error: ErrorInfo | None = None
        self.loaded_at: float | None = None
        self.digest = ""  # hash of the source this record was loaded from (hot reload)

    def fail(self, error: ErrorInfo) -> None:
        self.status, self.error = FAILED, error
