"""microcore: an async-first atomic microkernel. One file = one feature.

>>> from microcore import Plugin, create_app
"""

from __future__ import annotations

from ._app import create_app
from ._core.errors import MicroCoreError, NoResponder, RequestTimeout
from ._core.event import Event
from ._core.plugin import Plugin
from ._core.tool import Tool

__version__ = "0.2.0"  # the one place the version is written (pyproject reads it)

__all__ = (
    "Event",
    "MicroCoreError",
    "NoResponder",
    "Plugin",
    "RequestTimeout",
    "Tool",
    "create_app",
)
