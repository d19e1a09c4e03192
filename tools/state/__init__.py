"""What plugins use of the ``state`` tool: the store they receive and its error.

>>> from tools.state import State
>>>
>>> class RateLimitPlugin(Plugin):
...     def __init__(self, state: State) -> None:
...         self.state = state
...
...     async def allow(self, ip: str, minute: int) -> bool:
...         return await self.state.incr("rate", f"{ip}:{minute}") <= 100

The tool itself (``StateTool``) lives in ``tools/state/state_tool.py``; its backends in
``memory.py`` and ``redis.py``.
"""

from __future__ import annotations

from ._errors import StateError
from ._state import State

__all__ = ("State", "StateError")
