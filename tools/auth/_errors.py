"""The auth tool's error."""

from __future__ import annotations

from microcore.tooling import MicroCoreError

__all__ = ("InvalidToken",)


class InvalidToken(MicroCoreError):
    """A token that cannot be trusted: malformed, expired, wrongly signed or of another algorithm.

    Answered 401 (code ``invalid_token``) when a handler lets it through.

    >>> try:
    ...     claims = self.auth.verify_token(token)
    ... except InvalidToken:
    ...     ...
    """

    http_status = 401
    code = "invalid_token"
