"""File uploads: ``UploadFile`` fields, spooling to disk, the upload limit, cleaning up."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.http import HttpError, UploadFile
from tools.http._body import BodyLimit, read_body

from .conftest import Serve, Served

MIB = 1024 * 1024

UPLOADS = {
    "domains/media/models.py": """
    import msgspec
    from tools.http import UploadFile

    class NewAvatar(msgspec.Struct):
        user_id: int
        image: UploadFile
        caption: str = ""

    class Album(msgspec.Struct):
        photos: list[UploadFile]
        cover: UploadFile | None = None
    """,
    "domains/media/plugins/media_plugin.py": """
    from pathlib import Path
    from microcore import Plugin
    from domains.media.models import Album, NewAvatar

    class MediaPlugin(Plugin):
        def __init__(self, http):
            self.http = http
            self.seen = []

        async def on_boot(self):
            self.http.add_endpoint("/users/{user_id:int}/avatar", "PUT", self.avatar)
            self.http.add_endpoint("/albums", "POST", self.album)
            self.http.add_endpoint("/fail", "POST", self.fail, request_model=Album)
            self.http.add_endpoint("/plain", "POST", self.plain)

        async def avatar(self, data: NewAvatar, context) -> dict:
            self.seen.append(data.image)
            head = await data.image.read(4)
            rest = await data.image.read()
            await data.image.seek(0)
            target = Path(context.headers["x-save-to"]) if "x-save-to" in context.headers else None
            saved = await data.image.save(target) if target else None
            return {
                "user_id": data.user_id,
                "caption": data.caption,
                "filename": data.image.filename,
                "content_type": data.image.content_type,
                "size": data.image.size,
                "head": head.decode("latin-1"),
                "read": len(head) + len(rest),
                "saved": saved,
                "in_memory": data.image.in_memory,
            }

        async def album(self, data: Album, context) -> dict:
            self.seen.extend(data.photos)
            return {
                "photos": [[p.filename, (await p.read()).decode()] for p in data.photos],
                "cover": data.cover.filename if data.cover else None,
            }

        async def fail(self, data, context):
            self.seen.extend(data.photos)
            raise RuntimeError("the handler broke after reading the upload")

        async def plain(self, data, context):
            return {name: value.size for name, value in data.items()}
    """,
}


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temporary folder, so the files an upload spools to can be counted."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


def open_files_in(folder: Path) -> list[str]:
    """Files of ``folder`` this process holds open (spooled uploads are unlinked at once)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def seen(served: Served) -> list[UploadFile]:
    plugin: Any = served.kernel.plugins["media.MediaPlugin"].instance
    files: list[UploadFile] = plugin.seen
    return files


async def test_upload_fields_name_type_size_read_and_save(serve: Serve, tmp_path: Path) -> None:
    """An ``UploadFile`` field has the filename, content type and size sent; ``read()`` reads
    from the position, ``save(path)`` writes the whole file; path and text fields merge in."""
    served = await serve(UPLOADS)
    target = tmp_path / "saved.png"
    response = await served.client.put(
        "/users/7/avatar",
        files={"image": ("me.png", b"\x89PNG-bytes", "image/png")},
        data={"caption": "hello"},
        headers={"x-save-to": str(target)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": 7,
        "caption": "hello",
        "filename": "me.png",
        "content_type": "image/png",
        "size": 10,
        "head": "\x89PNG",
        "read": 10,
        "saved": 10,
        "in_memory": True,
    }
    assert target.read_bytes() == b"\x89PNG-bytes"
    assert all(upload.file.closed for upload in seen(served))


async def test_upload_list_field_takes_several_files(serve: Serve) -> None:
    """A ``list[UploadFile]`` field takes every file sent under its name, in order; an optional
    file left empty by the browser ("no file chosen") is None."""
    served = await serve(UPLOADS)
    part = 'Content-Disposition: form-data; name="{}"; filename="{}"\r\n\r\n{}\r\n'
    body = "".join(
        "--b\r\n" + part.format(*fields)
        for fields in (
            ("photos", "a.txt", "first"),
            ("photos", "b.txt", "second"),
            ("cover", "", ""),
        )
    )
    response = await served.client.post(
        "/albums",
        content=(body + "--b--\r\n").encode(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"photos": [["a.txt", "first"], ["b.txt", "second"]], "cover": None}


async def test_upload_missing_file_names_the_field(serve: Serve) -> None:
    """A required file that is not sent answers 422 naming the field."""
    served = await serve(UPLOADS)
    response = await served.client.put("/users/7/avatar", files={"caption": (None, "x")})
    assert response.status_code == 422
    assert response.json()["error"]["path"] == "$.image"


async def test_upload_route_refuses_json(serve: Serve) -> None:
    """An upload route answers a JSON body with 415 in the error shape."""
    served = await serve(UPLOADS)
    response = await served.client.put("/users/7/avatar", json={"image": "x"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_upload_past_one_mib_spools_to_disk_and_is_cleaned(
    serve: Serve, spool_dir: Path
) -> None:
    """A file past 1 MiB is on disk while the handler runs, and closed (its temporary file
    gone) once the response is sent."""
    served = await serve(UPLOADS)
    payload = os.urandom(3 * MIB)
    response = await served.client.put(
        "/users/1/avatar", files={"image": ("big.bin", payload, "application/octet-stream")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["size"] == len(payload)
    assert response.json()["in_memory"] is False
    assert seen(served)[0].file.closed
    assert open_files_in(spool_dir) == []


async def test_upload_over_the_limit_answers_413_and_keeps_nothing(
    serve: Serve, spool_dir: Path
) -> None:
    """A body over HTTP_MAX_UPLOAD answers 413 naming the setting, whether its length is declared
    or it streams in chunks (cut off as soon as it passes), and leaves no temporary file."""
    served = await serve(UPLOADS, settings={"HTTP_MAX_UPLOAD": str(2 * MIB)})
    declared = await served.client.put(
        "/users/1/avatar", files={"image": ("big.bin", b"x" * (3 * MIB), "image/png")}
    )
    assert declared.status_code == 413
    assert "HTTP_MAX_UPLOAD" in declared.json()["error"]["message"]
    pulled = 0

    async def streamed() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(1000):
            pulled += 1
            yield b"x" * 65536

    chunked = await served.client.put(
        "/users/1/avatar",
        content=streamed(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "payload_too_large"
    assert pulled < 40  # 2 MiB is 32 chunks: nothing read past the limit
    assert open_files_in(spool_dir) == []


async def test_upload_limit_of_other_routes_is_http_max_body(serve: Serve) -> None:
    """A multipart body to a route without ``UploadFile`` fields is bounded by HTTP_MAX_BODY;
    its files still arrive as ``UploadFile``s."""
    served = await serve(UPLOADS, settings={"HTTP_MAX_BODY": "1000"})
    small = await served.client.post("/plain", files={"f": ("a.txt", b"x" * 10)})
    assert small.json() == {"f": 10}
    big = await served.client.post("/plain", files={"f": ("a.txt", b"x" * 2000)})
    assert big.status_code == 413
    assert "HTTP_MAX_BODY" in big.json()["error"]["message"]


async def test_upload_is_cleaned_when_the_handler_fails(serve: Serve, spool_dir: Path) -> None:
    """A handler that raises after receiving files answers 500, and the files are closed."""
    served = await serve(UPLOADS)
    response = await served.client.post(
        "/fail", files=[("photos", ("a.bin", os.urandom(2 * MIB))), ("photos", ("b", b"b"))]
    )
    assert response.status_code == 500
    assert len(seen(served)) == 2
    assert all(upload.file.closed for upload in seen(served))
    assert open_files_in(spool_dir) == []


async def test_upload_is_cleaned_when_the_client_disconnects(serve: Serve, spool_dir: Path) -> None:
    """A client that leaves in the middle of an upload leaves no temporary file behind."""
    served = await serve(UPLOADS)
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    messages = [head] + [b"x" * 65536] * 24  # 1.5 MiB: already spooled to disk
    sent: list[dict[str, Any]] = []
    on_disk: list[list[str]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return {"type": "http.request", "body": messages.pop(0), "more_body": True}
        on_disk.append(open_files_in(spool_dir))
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/users/1/avatar",
        "raw_path": b"/users/1/avatar",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"multipart/form-data; boundary=b"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await served.running.app(scope, receive, send)
    assert sent == []  # nobody is left to answer
    assert len(on_disk) == 1 and len(on_disk[0]) == 1  # it was on disk while streaming
    assert open_files_in(spool_dir) == []


async def test_upload_file_used_on_its_own(tmp_path: Path) -> None:
    """``UploadFile`` works outside a request too (a unit test can build one), on disk or not."""
    upload = UploadFile("a.txt", "text/plain")
    await upload.write(b"hello")
    await upload.seek(0)
    assert (await upload.read(), upload.size, upload.in_memory) == (b"hello", 5, True)
    assert "a.txt" in repr(upload)
    big = UploadFile("b.bin")
    await big.write(b"x" * (MIB + 1))
    assert big.in_memory is False
    await big.seek(0)
    assert len(await big.read()) == MIB + 1
    assert await big.save(tmp_path / "b.bin") == MIB + 1
    await upload.close()
    await big.close()
    assert upload.file.closed and big.file.closed


async def test_upload_openapi_shows_a_multipart_form_with_binary_fields(serve: Serve) -> None:
    """An upload route documents a ``multipart/form-data`` body whose files are binary strings
    (lists of them for ``list[UploadFile]``), and its 413 and 415 answers."""
    served = await serve(UPLOADS)
    document = served.http.openapi()
    operation = document["paths"]["/users/{user_id}/avatar"]["put"]
    (media,) = operation["requestBody"]["content"]
    assert media == "multipart/form-data"
    schema = operation["requestBody"]["content"][media]["schema"]
    assert schema["properties"]["image"] == {"type": "string", "format": "binary"}
    assert "user_id" not in schema["properties"]  # it is in the path
    assert {"413", "415", "422"} <= set(operation["responses"])
    album = document["components"]["schemas"]["Album"]["properties"]
    assert album["photos"]["items"] == {"type": "string", "format": "binary"}


async def test_upload_form_without_filenames_or_files(serve: Serve) -> None:
    """A part for an ``UploadFile`` field without a filename is still a file (a filename is
    optional in multipart), and a list field nothing was sent for is empty."""
    served = await serve(UPLOADS)
    response = await served.client.post("/albums", files={"cover": (None, "raw bytes")})
    assert response.status_code == 200, response.text
    assert response.json() == {"photos": [], "cover": ""}


async def test_upload_settings_must_be_positive(serve: Serve) -> None:
    """HTTP_MAX_UPLOAD of zero or less fails the http tool, naming the setting."""
    served = await serve(UPLOADS, settings={"HTTP_MAX_UPLOAD": "0"})
    record = served.kernel.tools["http"]
    assert record.status == "failed"
    assert "HTTP_MAX_UPLOAD must be a positive number of bytes, got 0" in record.error.message


async def test_upload_with_too_many_parts_is_refused(serve: Serve) -> None:
    """A multipart body of more than 1000 parts answers 400 before the parts pile up."""
    served = await serve(UPLOADS)
    part = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
    response = await served.client.post(
        "/plain",
        content=part * 1001 + b"--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400
    assert "more than 1000 parts" in response.json()["error"]["message"]


async def test_upload_single_message_over_the_limit_is_refused() -> None:
    """A body that arrives in one message without a declared length is still bounded."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * 11, "more_body": False}

    with pytest.raises(HttpError) as caught:
        await read_body(receive, -1, BodyLimit(10))
    assert caught.value.http_status == 413
    assert "(HTTP_MAX_BODY)" in caught.value.message
