"""``tools.state`` is the plugin-facing facade: every public name is in ``__all__`` and
importable, and the tool's ``bind`` says plugins receive a ``State``."""

from __future__ import annotations

import typing
from types import ModuleType

import tools.state
from tools.state.state_tool import StateTool


def test_state_facade_exports_every_public_name() -> None:
    """``__all__`` is a tuple naming exactly the public names the package defines."""
    public = {
        name
        for name, value in vars(tools.state).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)  # not submodules
    }
    public -= {"annotations"}  # from __future__ import annotations
    assert isinstance(tools.state.__all__, tuple)
    assert sorted(public) == sorted(tools.state.__all__) == ["State", "StateError"]


def test_state_bind_is_annotated_with_the_plugin_facing_type() -> None:
    """The manifest reads what plugins receive from ``bind``'s return annotation."""
    assert typing.get_type_hints(StateTool.bind)["return"] is tools.state.State
    assert issubclass(StateTool, tools.state.State)
