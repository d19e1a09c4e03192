from microcore import Plugin


class PingPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/ping", "GET", self.execute)

    async def execute(self, data, context):
        return {"message": "pong"}
