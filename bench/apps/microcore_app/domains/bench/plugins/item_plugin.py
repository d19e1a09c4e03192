import msgspec

from microcore import Plugin


class ItemQuery(msgspec.Struct):
    item_id: int
    q: str | None = None


class ItemPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/items/{item_id:int}", "GET", self.execute, request_model=ItemQuery)

    async def execute(self, data, context):
        return {"id": data.item_id, "q": data.q}
