"""``tools.scheduler`` is the plugin-facing facade: every public name is in ``__all__``, and
the tool's ``bind`` says plugins receive a ``Scheduler``."""

from __future__ import annotations

import typing
from types import ModuleType

import tools.scheduler
from microcore.tooling import RegistrationError
from tools.scheduler.scheduler_tool import SchedulerTool


def test_scheduler_facade_exports_every_public_name() -> None:
    """``__all__`` is a tuple naming exactly the public names the package defines."""
    public = {
        name
        for name, value in vars(tools.scheduler).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)  # not submodules
    }
    public -= {"annotations"}  # from __future__ import annotations
    assert isinstance(tools.scheduler.__all__, tuple)
    assert sorted(public) == sorted(tools.scheduler.__all__)
    assert {"Scheduler", "ScheduleError", "JobStats", "JobKind"} <= public


def test_scheduler_bind_is_annotated_with_the_plugin_facing_type() -> None:
    """The manifest reads what plugins receive from ``bind``'s return annotation."""
    assert typing.get_type_hints(SchedulerTool.bind)["return"] is tools.scheduler.Scheduler
    assert issubclass(tools.scheduler.ScheduleError, RegistrationError)
    assert issubclass(tools.scheduler.ScheduleError, ValueError)
