"""Shapes shared by the users domain's plugins.

Request bodies forbid unknown fields: a sign-up or update that sends ``roles`` or
``id`` is refused (422), so nobody grants themselves a role by adding a field.
Passwords never leave in a response: ``User`` has no such field.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tools.http import UploadFile

# no \s in the pattern: Python and JSON Schema (ECMA) regexes disagree on what it matches
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@ \n]+@[^@ \n]+\.[^@ \n]+$", max_length=254)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SignUp(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /users``."""

    email: Email
    password: Password
    name: Name


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /users/login``."""

    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=128)]


class UserId(msgspec.Struct):
    """A path parameter: ``/users/{user_id:int}``."""

    user_id: int


class Rename(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PATCH /users/{user_id}`` (the id comes from the path)."""

    user_id: int
    name: Name


class User(msgspec.Struct):
    """An account, as the API returns it."""

    id: int
    email: str
    name: str
    roles: list[str]


class Session(msgspec.Struct):
    """What a log-in returns: the bearer token, its lifetime, and the CSRF value for
    browsers that use the cookies instead (send it back as ``X-CSRF-Token``)."""

    token: str
    expires_in: int
    csrf_token: str
    token_type: str = "bearer"


USER_COLUMNS = "id, email, name, roles"


def user_from(row: dict[str, Any]) -> User:
    """A ``User`` from a row of ``SELECT {USER_COLUMNS} FROM users``."""
    return User(id=row["id"], email=row["email"], name=row["name"], roles=row["roles"].split(","))


class NewAvatar(msgspec.Struct):
    """The multipart body of ``PUT /users/{user_id}/avatar`` (the id comes from the path)."""

    user_id: int
    image: UploadFile


class Avatar(msgspec.Struct):
    """A stored avatar, as the upload answers it."""

    user_id: int
    content_type: str
    size: int
