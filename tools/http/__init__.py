"""What plugins use of the ``http`` tool: the handle they receive, the request context, errors.

>>> from tools.http import Context, Http, NotFound
>>>
>>> class ShowProductPlugin(Plugin):
...     def __init__(self, http: Http, db: Db) -> None:
...         self.http, self.db = http, db
...
...     async def on_boot(self) -> None:
...         self.http.add_endpoint("/products/{product_id:int}", "GET", self.execute)
...
...     async def execute(self, data: ProductQuery, context: Context) -> Product:
...         row = await self.db.query_one("SELECT * FROM products WHERE id = ?", (data.product_id,))
...         if row is None:
...             raise NotFound(f"product {data.product_id} does not exist")
...         return Product(**row)

The tool itself (``HttpTool``) lives in ``tools/http/http_tool.py``; the rest are private modules.
"""

from __future__ import annotations

from microcore.tooling import Registration

from ._context import Context, SameSite, ServerSentEvent
from ._errors import BadRequest, Conflict, Forbidden, HttpError, NotFound, Unauthorized
from ._handle import Http
from ._uploads import UploadFile

__all__ = (
    "BadRequest",
    "Conflict",
    "Context",
    "Forbidden",
    "Http",
    "HttpError",
    "NotFound",
    "Registration",
    "SameSite",
    "ServerSentEvent",
    "Unauthorized",
    "UploadFile",
)
