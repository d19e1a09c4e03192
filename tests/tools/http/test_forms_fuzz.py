"""The fuzz gate over form routes: schemathesis sends documented (and broken) multipart and
url-encoded bodies to an app with uploads; no 5xx, nothing outside the error shape, nothing
that contradicts the document.

One check is off here: "schema-violating data is refused". A form carries text and files
only, so ``true`` or ``5`` sent for a text field is the text "true" or "5", a text part
sent for a file field is a file holding it, and an absent list is an empty one: the
"violation" schemathesis sends cannot be told from valid data. JSON bodies keep the check
in the main gate (``tests/fuzz``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python import asgi

from microcore import create_app
from microcore.testing import TEST_SETTINGS
from tests.conftest import ProjectFactory
from tests.fuzz.test_openapi_fuzz import CONFIG, Tally, fuzz, report

FORMS = {
    "domains/media/models.py": """
    from typing import Annotated
    import msgspec
    from tools.http import UploadFile

    class NewAvatar(msgspec.Struct):
        user_id: int
        image: UploadFile
        caption: Annotated[str, msgspec.Meta(max_length=50)] = ""

    class Album(msgspec.Struct):
        title: str
        photos: list[UploadFile]
        cover: UploadFile | None = None

    class Signup(msgspec.Struct):
        email: Annotated[str, msgspec.Meta(min_length=3, max_length=100)]
        height: Annotated[float, msgspec.Meta(ge=0, le=3)]
        topics: list[str]
        newsletter: bool = False
    """,
    "domains/media/plugins/media_plugin.py": """
    from microcore import Plugin
    from tools.http import BadRequest
    from domains.media.models import Album, NewAvatar, Signup

    class MediaPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/users/{user_id:int}/avatar", "PUT", self.avatar)
            self.http.add_endpoint("/albums", "POST", self.album, status_code=201)
            self.http.add_endpoint("/signups", "POST", self.signup, status_code=201)

        async def avatar(self, data: NewAvatar, context) -> dict:
            return {"size": data.image.size, "bytes": len(await data.image.read())}

        async def album(self, data: Album, context) -> dict:
            return {"photos": len(data.photos), "cover": data.cover is not None}

        async def signup(self, data: Signup, context) -> dict:
            return {"email": data.email, "topics": data.topics, "newsletter": data.newsletter}
    """,
}
SETTINGS = {**TEST_SETTINGS, "LOG_LEVEL": "ERROR", "HTTP_ACCESS_LOG": "false"}
FORM_CONFIG = {**CONFIG, "checks": {"negative_data_rejection": {"enabled": False}}}


@pytest.fixture
def schema(make_project: ProjectFactory) -> Iterator[schemathesis.BaseSchema]:
    """An app with an upload, a multi-file upload and a flat form, and its document."""
    root = make_project(FORMS, tools=["config", "logger", "http"])
    app = create_app(root, environ=SETTINGS)
    config = schemathesis.Config.from_dict(FORM_CONFIG)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.timeout(240)
def test_forms_fuzz_every_form_operation_answers_as_documented(
    schema: schemathesis.BaseSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    """Multipart and url-encoded bodies, valid and invalid, to every form route: no 5xx, no
    answer outside the error shape, none that contradicts the document."""
    tally = Tally("forms")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the document has operations schemathesis refuses"
    assert {"PUT /users/{user_id}/avatar", "POST /albums", "POST /signups"} <= {
        operation.label for operation in operations
    }
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, False, tally)
    report(capsys, tally)
    assert tally.statuses[201] > 0 and tally.statuses[200] > 0  # valid forms were accepted
    assert not tally.failed, tally.summary()
