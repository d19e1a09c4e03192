"""The floor: a bare ASGI callable, no framework. msgspec validation, aiosqlite, one connection.

What no framework can beat on this machine: one dict lookup for the route, the query
parsed by hand, msgspec for the body and the reply, two ``send`` calls.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import msgspec
from bench_sqlite import insert_product, lifespan


class NewProduct(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price: Annotated[float, msgspec.Meta(gt=0)]


DECODE = msgspec.json.Decoder(NewProduct).decode
ENCODE = msgspec.json.Encoder().encode
JSON = [(b"content-type", b"application/json")]
PONG = ENCODE({"message": "pong"})


async def reply(send: Any, status: int, body: bytes) -> None:
    headers = [*JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path, method = scope["path"], scope["method"]
    if path == "/ping" and method == "GET":
        await reply(send, 200, PONG)
    elif path.startswith("/items/") and method == "GET":
        try:
            item_id = int(path[7:])
        except ValueError:
            await reply(send, 404, b'{"error":"not found"}')
            return
        q = dict(parse_qsl(scope["query_string"].decode("latin-1"))).get("q")
        await reply(send, 200, ENCODE({"id": item_id, "q": q}))
    elif path == "/products" and method == "POST":
        try:
            data = DECODE(await read_body(receive))
        except msgspec.ValidationError as exc:
            await reply(send, 422, ENCODE({"error": str(exc)}))
            return
        except msgspec.DecodeError:
            await reply(send, 400, b'{"error":"malformed JSON"}')
            return
        product_id = await insert_product(data.name, data.price)
        await reply(send, 201, ENCODE({"success": True, "id": product_id, "name": data.name}))
    else:
        await reply(send, 404, b'{"error":"not found"}')


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "lifespan":
        message = await receive()
        async with lifespan(None):
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
