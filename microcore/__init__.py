"""microcore: an async-first atomic microkernel. One file = one feature.

>>> from microcore import Plugin, create_app
"""

from __future__ import annotations

from ._app import create_app
from ._errors import MicroCoreError, NoResponder, RequestTimeout
from ._event import Event
from ._plugin import Plugin
from ._tool import Tool

__all__ = (
    "Event",
    "MicroCoreError",
    "NoResponder",
    "Plugin",
    "RequestTimeout",
    "Tool",
    "create_app",
)
