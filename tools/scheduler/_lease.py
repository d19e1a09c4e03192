"""Once per cluster: which replica runs a due time, through the shared ``state`` store.

Two kinds of keys in the ``scheduler`` namespace, both taken with ``State.claim``
(atomic: ``SET NX PX`` on Redis) and expiring after the lease (``SCHEDULER_LEASE``,
10 s by default):

* ``<job>@<due ms>``, the claim of one due time: exactly one replica gets it and
  may run it; the others leave it.
* ``<job>#running``, held by the replica running the job (its token) and renewed
  while it runs: a replica that wins the next due time while it is held skips that
  run (a run is never stacked on another, on any replica). A replica that dies
  mid-run stops renewing, so the key expires and the job runs again after at most
  one lease. Renewal and release only touch the key while it holds the token.
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
        if not await state.claim(NAMESPACE, f"{job}@{ms}", self.ttl):
            return Claim.TAKEN
        token = f"{self.replica}:{ms}"
        if not await state.claim(NAMESPACE, f"{job}#running", self.ttl, holder=token):
            return Claim.BUSY
        return token

    async def renew(self, job: str, token: str) -> bool:
        """Extend the running key while the run goes on; False when another replica holds it."""
        return await self._state.claim(NAMESPACE, f"{job}#running", self.ttl, holder=token)

    async def release(self, job: str, token: str) -> None:
        """The run ended: free the running key (unless it expired and another replica holds it)."""
        await self._state.release(NAMESPACE, f"{job}#running", token)
