"""What plugins use of the ``auth`` tool: the handle they receive and its error.

>>> from tools.auth import Auth, InvalidToken
>>>
>>> class SignUpPlugin(Plugin):
...     def __init__(self, http: Http, db: Db, auth: Auth) -> None:
...         self.http, self.db, self.auth = http, db, auth
...
...     async def execute(self, data: NewUser, context: Context) -> User:
...         hashed = await self.auth.hash_password(data.password)
...         ...

Routes ask for a token with ``add_endpoint(..., auth=True)`` or ``auth="admin"``; the
handler reads the verified claims from ``context.identity``. The tool itself
(``AuthTool``) lives in ``tools/auth/auth_tool.py``.
"""

from __future__ import annotations

from ._auth import Auth
from ._errors import InvalidToken

__all__ = ("Auth", "InvalidToken")
