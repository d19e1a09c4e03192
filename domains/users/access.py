"""Who may change an account: its owner, or an admin. Shared by update and delete."""

from __future__ import annotations

from typing import Any

from tools.http import Forbidden


def require_owner_or_admin(identity: Any, user_id: int) -> None:
    """Raise 403 unless the verified ``identity`` is account ``user_id`` or has role admin.

    ``identity`` is ``context.identity``: the claims of a token the auth tool verified,
    never a value from the request body or query (so ``{"sub": ...}`` in a body is inert).
    """
    if identity["sub"] == str(user_id) or "admin" in identity.get("roles", []):
        return
    raise Forbidden(f"you may change only your own account, not account {user_id}")
