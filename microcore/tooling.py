"""The API for tool authors: ownership, the kernel, causal context, shared errors.

Plugins never import this module; tools do (the same contract a third-party tool uses)::

    from microcore.tooling import Owner, require_coroutine_function

    class CronTool(Tool):
        name = "cron"

        def bind(self, owner: Owner) -> CronHandle:
            return CronHandle(self, owner)   # every job recorded with owner.own(...)
"""

from __future__ import annotations

from ._contracts import (
    EventFlows,
    EventSource,
    KernelView,
    RouteKind,
    ServedRoute,
    ServesRoutes,
)
from ._core.context import causation, current_correlation_id, current_event_id, new_id
from ._core.discovery import ErrorInfo
from ._core.errors import (
    ConfigurationError,
    DependencyError,
    EventNameError,
    HookError,
    MicroCoreError,
    NoResponder,
    RegistrationError,
    RequestTimeout,
)
from ._core.injection import require_coroutine_function
from ._core.ownership import Owner, OwnerState, Registration
from ._core.records import PluginRecord, ToolRecord
from ._core.status import ErrorView, PluginStatus, SystemStatus, ToolStatus
from ._core.tool import FilesApplied
from ._core.tracing import TRACING, Tracing
from ._dev.scan import SourceScan, find_declarations, scan_file

__all__ = (
    "TRACING",
    "ConfigurationError",
    "DependencyError",
    "ErrorInfo",
    "ErrorView",
    "EventFlows",
    "EventNameError",
    "EventSource",
    "FilesApplied",
    "HookError",
    "KernelView",
    "MicroCoreError",
    "NoResponder",
    "Owner",
    "OwnerState",
    "PluginRecord",
    "PluginStatus",
    "Registration",
    "RegistrationError",
    "RequestTimeout",
    "RouteKind",
    "ServedRoute",
    "ServesRoutes",
    "SourceScan",
    "SystemStatus",
    "ToolRecord",
    "ToolStatus",
    "Tracing",
    "causation",
    "current_correlation_id",
    "current_event_id",
    "find_declarations",
    "new_id",
    "require_coroutine_function",
    "scan_file",
)
