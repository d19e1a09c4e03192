"""Raw Starlette: the baseline. Hand-written validation, aiosqlite, one connection."""

from __future__ import annotations

from bench_sqlite import insert_product, lifespan
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"message": "pong"})


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"], "q": request.query_params.get("q")})


async def create_product(request: Request) -> JSONResponse:
    try:
        data = await request.json()
    except ValueError:
        return JSONResponse({"success": False, "error": "malformed JSON"}, status_code=400)
    name, price = data.get("name"), data.get("price")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        return JSONResponse({"success": False, "error": "name"}, status_code=422)
    if isinstance(price, bool) or not isinstance(price, int | float) or price <= 0:
        return JSONResponse({"success": False, "error": "price"}, status_code=422)
    product_id = await insert_product(name, price)
    return JSONResponse(
        {"success": True, "id": product_id, "name": name},
        status_code=201,
    )


app = Starlette(
    routes=[
        Route("/ping", ping),
        Route("/items/{item_id:int}", item),
        Route("/products", create_product, methods=["POST"]),
    ],
    lifespan=lifespan,
)
