"""Once per cluster: which replica runs a due time, through the shared ``state`` store.

Two kinds of keys in the ``scheduler`` namespace, both expiring after the lease
(``SCHEDULER_LEASE``, 10 s by default):

* ``<job>@<due ms>``, the claim of one due time: ``incr`` is atomic, so exactly one
  replica sees 1 and runs it; the others see 2, 3, ... and leave it.
* ``<job>#running``, held by the replica running the job and renewed while it runs:
  a replica that claims the next due time while it is held skips that run (a run is
  never stacked on another, on any replica). A replica that dies mid-run stops
  renewing, so the key expires and the job runs again after at most one lease.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from microcore.tooling import new_id

if TYPE_CHECKING:  # the state tool is optional: a project without it runs jobs locally
    from tools.state import State

__all__ = ("NAMESPACE", "Claim", "Lease")

NAMESPACE = "scheduler"


class Claim(Enum):
    TAKEN = "taken"  # another replica runs this due time
    BUSY = "busy"  # this replica claimed it, but a run of the job is still going somewhere


class Lease:
    """Claims due times and holds the running key, for one scheduler (one replica)."""

    def __init__(self, state: State, ttl: float) -> None:
        self._state = state
        self.ttl = ttl
        self.replica = new_id()

    async def claim(self, job: str, due: float) -> Claim | str:
        """Claim ``job``'s run at ``due``: a token to :meth:`renew` and :meth:`release`
        when this replica is to run it, else why not."""
        state, ms = self._state, round(due * 1000)
        slot = f"{job}@{ms}"
        if await state.incr(NAMESPACE, slot) != 1:
            return Claim.TAKEN
        await state.set(NAMESPACE, slot, 1, ttl=self.ttl)  # the claim expires too
        running = f"{job}#running"
        if await state.get(NAMESPACE, running) is not None:
            return Claim.BUSY
        token = f"{self.replica}:{ms}"
        await state.set(NAMESPACE, running, token, ttl=self.ttl)
        return token

    async def renew(self, job: str, token: str) -> bool:
        """Extend the running key while the run goes on; False when another replica holds it."""
        running = f"{job}#running"
        if await self._state.get(NAMESPACE, running) not in (None, token):
            return False
        await self._state.set(NAMESPACE, running, token, ttl=self.ttl)
        return True

    async def release(self, job: str, token: str) -> None:
        """The run ended: free the running key (unless it expired and another replica holds it)."""
        running = f"{job}#running"
        if await self._state.get(NAMESPACE, running) == token:
            await self._state.delete(NAMESPACE, running)
