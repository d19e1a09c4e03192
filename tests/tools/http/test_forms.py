"""Form bodies (url-encoded, multipart) decoded into the request model, and the raw body."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tools.http._context import Context

from .conftest import Serve

FORMS = {
    "domains/shop/models.py": """
    from typing import Annotated
    import msgspec

    class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
        name: Annotated[str, msgspec.Meta(min_length=1)]
        price: Annotated[float, msgspec.Meta(gt=0)]
        tags: list[str] = []
        draft: bool = False

    class Review(msgspec.Struct):
        product_id: int
        stars: int
        text: str = ""

    class Item(msgspec.Struct):
        name: str
    """,
    "domains/shop/plugins/forms_plugin.py": """
    import hashlib, hmac
    import msgspec
    from microcore import Plugin
    from domains.shop.models import Item, NewProduct, Review

    SECRET = b"webhook-secret"

    class FormsPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/products", "POST", self.create, request_model=NewProduct)
            self.http.add_endpoint(
                "/products/{product_id:int}/reviews", "POST", self.review, request_model=Review
            )
            self.http.add_endpoint("/loose", "POST", self.loose)
            self.http.add_endpoint("/items", "POST", self.items, request_model=list[Item])
            self.http.add_endpoint("/whoami", "POST", self.whoami)
            self.http.add_endpoint("/hook", "POST", self.hook, request_model=NewProduct)
            self.http.add_endpoint("/raw", "POST", self.raw)
            self.http.add_endpoint("/raw", "GET", self.raw)

        async def create(self, data, context):
            return msgspec.to_builtins(data)

        async def review(self, data, context):
            return msgspec.to_builtins(data)

        async def loose(self, data, context):
            return data

        async def items(self, data, context):
            return msgspec.to_builtins(data)

        async def whoami(self, data, context):
            return {"identity": context.identity, "data": data}

        async def hook(self, data, context):
            body = await context.body()
            expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(expected, context.headers.get("x-signature", ""))
            return {"signed": signed, "name": data.name, "again": await context.body() == body}

        async def raw(self, data, context):
            return {"hex": (await context.body()).hex()}
    """,
}


async def test_form_urlencoded_decodes_into_the_model(serve: Serve) -> None:
    """A url-encoded form fills the model: strings converted to the field types, a repeated
    name fills a list field, unknown fields (a submit button) are ignored."""
    served = await serve(FORMS)
    response = await served.client.post(
        "/products",
        content=b"name=Caf%C3%A9+pen&price=2.5&tags=a&tags=b&draft=true&submit=Save",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "Café pen", "price": 2.5, "tags": ["a", "b"], "draft": True}


async def test_form_multipart_fields_decode_into_the_model(serve: Serve) -> None:
    """A multipart form without files fills the model as a url-encoded one does; path and
    query parameters merge in (the path wins)."""
    served = await serve(FORMS)
    response = await served.client.post(
        "/products/7/reviews?text=from-query",
        files={"stars": (None, "5"), "product_id": (None, "99")},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"product_id": 7, "stars": 5, "text": "from-query"}


async def test_form_validation_error_names_the_field(serve: Serve) -> None:
    """A form value of the wrong type, or a missing field, answers 422 naming its path."""
    served = await serve(FORMS)
    form = {"content-type": "application/x-www-form-urlencoded"}
    response = await served.client.post("/products", content=b"name=pen&price=x", headers=form)
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["path"]) == ("validation_error", "$.price")
    missing = await served.client.post("/products", files={"name": (None, "pen")})
    assert missing.status_code == 422
    assert missing.json()["error"]["path"] == "$.price"
    twice = await served.client.post("/products", content=b"name=a&name=b&price=1", headers=form)
    assert twice.status_code == 422
    assert twice.json()["error"]["path"] == "$.name"


async def test_form_file_for_a_text_field_is_refused(serve: Serve) -> None:
    """A file sent where the model wants text answers 422 naming the field."""
    served = await serve(FORMS)
    response = await served.client.post(
        "/products", files={"name": ("pen.txt", b"pen"), "price": (None, "1")}
    )
    assert response.status_code == 422
    assert response.json()["error"]["path"] == "$.name"


async def test_form_without_a_model_is_a_dict(serve: Serve) -> None:
    """Without a request model ``data`` is the form's fields as strings (the last of a name)."""
    served = await serve(FORMS)
    response = await served.client.post("/loose?q=1", data={"a": "1", "b": ["x", "y"]})
    assert response.json() == {"q": "1", "a": "1", "b": "y"}


async def test_form_to_a_json_only_model_is_refused(serve: Serve) -> None:
    """A model that is not a Struct (``list[Item]``) takes JSON only: a form is a 400."""
    served = await serve(FORMS)
    response = await served.client.post("/items", data={"name": "pen"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


async def test_form_malformed_bodies_answer_400(serve: Serve) -> None:
    """A multipart body without a boundary, cut short, with a nameless part or non-UTF-8 text
    answers 400 malformed_form."""
    served = await serve(FORMS)
    cases = [
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\n1"),
        ("multipart/form-data; boundary=x", b"garbage"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\r\n--x--\r\n',
        ),
        ("application/x-www-form-urlencoded", b"name=\xff"),
    ]
    for content_type, body in cases:
        response = await served.client.post(
            "/products", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 400, (content_type, body, response.text)
        assert response.json()["error"]["code"] == "malformed_form"


async def test_form_content_type_without_a_body_reads_the_url(serve: Serve) -> None:
    """A form Content-Type with an empty body decodes the URL alone."""
    served = await serve(FORMS)
    response = await served.client.post(
        "/loose?q=1", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.json() == {"q": "1"}


async def test_form_field_cannot_set_the_identity(serve: Serve) -> None:
    """A field named ``identity`` in a form, a multipart body, the query or a JSON body is data:
    ``context.identity`` stays None."""
    served = await serve(FORMS)
    attempts: list[dict[str, Any]] = [
        {"data": {"identity": "admin"}},
        {"files": {"identity": (None, "admin")}},
        {"json": {"identity": {"sub": "admin", "roles": ["admin"]}}},
        {"params": {"identity": "admin"}},
    ]
    for attempt in attempts:
        response = await served.client.post("/whoami", **attempt)
        assert response.status_code == 200
        assert response.json()["identity"] is None, attempt
        assert "identity" in response.json()["data"]


async def test_context_body_is_the_exact_raw_bytes(serve: Serve) -> None:
    """``await context.body()`` is the exact bytes sent (a webhook signature verifies), beside
    the decoded model, for JSON and url-encoded bodies alike; read twice, the same."""
    served = await serve(FORMS)
    for body, content_type in (
        (b'{"name":  "pen", "price": 1.50}', "application/json"),
        (b"name=pen&price=1.50&tags=%C3%A9", "application/x-www-form-urlencoded"),
    ):
        signature = hmac.new(b"webhook-secret", body, hashlib.sha256).hexdigest()
        headers = {"content-type": content_type, "x-signature": signature}
        response = await served.client.post("/hook", content=body, headers=headers)
        assert response.json() == {"signed": True, "name": "pen", "again": True}
    binary = bytes(range(256)) * 4
    octets = {"content-type": "application/octet-stream"}
    response = await served.client.post("/raw", content=binary, headers=octets)
    assert bytes.fromhex(response.json()["hex"]) == binary


async def test_context_body_without_a_body_is_empty(serve: Serve) -> None:
    """A request without a body has ``b""`` as its raw body."""
    served = await serve(FORMS)
    assert (await served.client.get("/raw")).json() == {"hex": ""}


async def test_context_body_that_is_not_json_is_left_to_the_handler(serve: Serve) -> None:
    """Without a model, a body whose Content-Type is not JSON (text, XML, bytes) is not decoded:
    ``data`` is the URL's parameters and the handler reads the body itself."""
    served = await serve(FORMS)
    response = await served.client.post(
        "/loose?q=1", content=b"<xml/>", headers={"content-type": "text/xml"}
    )
    assert response.json() == {"q": "1"}
    response = await served.client.post("/loose", content=b"{bad", headers={"content-type": ""})
    assert response.status_code == 400


async def test_context_body_of_a_streamed_multipart_body_says_why_not() -> None:
    """Once a multipart body streamed into its files, ``context.body()`` explains it is gone."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    context = Context({"type": "http", "headers": []}, receive, "rid", length=10)
    context._chunks()
    try:
        await context.body()
    except RuntimeError as exc:
        assert "streamed into its upload files" in str(exc)
    else:
        raise AssertionError("context.body() should refuse")


async def test_context_body_read_by_middleware_still_decodes_the_model(serve: Serve) -> None:
    """A middleware that reads ``context.body()`` first (to check a signature) leaves the body
    for the handler's model, JSON or multipart."""
    files = dict(FORMS)
    files["domains/shop/plugins/sign_plugin.py"] = """
    from microcore import Plugin

    class SignPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_middleware(self.sizes)

        async def sizes(self, context, call_next):
            size = len(await context.body())
            response = await call_next()
            response.headers["x-body-size"] = str(size)
            return response
    """
    served = await serve(files)
    response = await served.client.post("/products", json={"name": "pen", "price": 1})
    assert response.json()["name"] == "pen"
    assert response.headers["x-body-size"] == str(len(b'{"name":"pen","price":1}'))
    multipart = await served.client.post(
        "/products", files={"name": (None, "pen"), "price": (None, "2")}
    )
    assert multipart.json()["price"] == 2.0
    assert int(multipart.headers["x-body-size"]) > 0


async def test_form_openapi_offers_url_encoded_for_flat_models(serve: Serve) -> None:
    """A body whose model is flat (text, numbers, booleans, lists of them) is documented as JSON
    or a url-encoded form; a nested one as JSON only."""
    served = await serve(FORMS)
    paths = served.http.openapi()["paths"]
    flat = paths["/products"]["post"]["requestBody"]["content"]
    assert list(flat) == ["application/json", "application/x-www-form-urlencoded"]
    nested = paths["/items"]["post"]["requestBody"]["content"]
    assert list(nested) == ["application/json"]
    assert "415" not in paths["/products"]["post"]["responses"]
