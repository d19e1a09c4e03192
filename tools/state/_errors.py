"""The state tool's error."""

from __future__ import annotations

from microcore.tooling import MicroCoreError

__all__ = ("StateError",)


class StateError(MicroCoreError):
    """A state call was refused: a value that cannot be stored, a bad TTL, incr on a non-integer."""
