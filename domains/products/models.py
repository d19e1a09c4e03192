"""Shapes shared by the products domain's plugins.

Plugins import these absolutely: ``from domains.products.models import NewProduct``.
Validation lives in the types: a request that breaks a constraint is answered
422 naming the field (``$.price``) before the handler runs.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /products``."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price: Annotated[float, msgspec.Meta(gt=0)]


class ProductId(msgspec.Struct):
    """A path parameter: ``/products/{product_id:int}``."""

    product_id: int


class Product(msgspec.Struct):
    """A stored product, as the API returns it."""

    id: int
    name: str
    price: float
