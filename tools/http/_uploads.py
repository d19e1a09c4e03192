"""``UploadFile``: one file of a ``multipart/form-data`` request, spooled to disk past 1 MiB.

The bytes sit in a ``tempfile.SpooledTemporaryFile``: in memory up to
:data:`SPOOL_BYTES`, then in an anonymous temporary file (unlinked at creation,
so nothing is left behind even if the process dies). Once the file is on disk
every read, write, seek and copy runs in a worker thread, never on the event
loop. The tool closes every upload of a request after the response is sent
(success, error or disconnect), which frees the memory or the disk space.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import IO

import anyio.to_thread

__all__ = ("SPOOL_BYTES", "UploadFile")

SPOOL_BYTES = 1024 * 1024
"""An upload stays in memory up to this size, then moves to a temporary file."""


class UploadFile:
    """A multipart file (``filename``, ``content_type``, ``size``, ``headers``, ``file``).

    A request model field typed ``UploadFile``, ``UploadFile | None`` or
    ``list[UploadFile]`` receives it; ``size`` is in bytes, ``headers`` are its part's.

    >>> class NewAvatar(msgspec.Struct):
    ...     user_id: int
    ...     image: UploadFile
    >>>
    >>> async def execute(self, data: NewAvatar, context: Context) -> dict[str, int]:
    ...     if data.image.content_type not in ("image/png", "image/jpeg"):
    ...         raise BadRequest("send a PNG or JPEG image", path="$.image")
    ...     await data.image.save(AVATARS / f"{data.user_id}.img")
    ...     return {"size": data.image.size}

    ``read()`` reads from the current position (``seek(0)`` to read again). The file
    is closed by the tool once the response is sent: save or read it in the handler.
    """

    __slots__ = ("content_type", "file", "filename", "headers", "size")

    def __init__(
        self,
        filename: str,
        content_type: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        file: IO[bytes] | None = None,
    ) -> None:
        self.filename = filename
        """The name the client gave (untrusted: never use it as a path as it is)."""
        self.content_type = content_type
        """The part's ``Content-Type`` as the client sent it (untrusted), or None."""
        self.headers = headers or {}
        """The part's headers, names lowercased."""
        self.size = 0
        """The number of bytes received."""
        self.file: IO[bytes] = file if file is not None else _spooled()
        """The underlying binary file (a ``SpooledTemporaryFile``), positioned at the start."""

    @property
    def in_memory(self) -> bool:
        """Whether the bytes are still in memory (not yet spooled to disk)."""
        return not getattr(self.file, "_rolled", True)

    async def write(self, data: bytes) -> None:
        """Append ``data`` (the tool does this while the request streams in)."""
        self.size += len(data)
        if self.in_memory and self.file.tell() + len(data) <= SPOOL_BYTES:
            self.file.write(data)
        else:  # this write rolls the file over to disk, or it is there already
            await anyio.to_thread.run_sync(self.file.write, data)

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all that is left by default)."""
        if self.in_memory:
            return self.file.read(size)
        return await anyio.to_thread.run_sync(self.file.read, size)

    async def seek(self, offset: int) -> None:
        """Move to byte ``offset`` (``await upload.seek(0)`` to read it again)."""
        if self.in_memory:
            self.file.seek(offset)
        else:
            await anyio.to_thread.run_sync(self.file.seek, offset)

    async def save(self, path: str | os.PathLike[str]) -> int:
        """Write the whole file to ``path`` (created or replaced); returns the bytes written.

        >>> await data.image.save(Path("avatars") / f"{user_id}.png")
        """
        return await anyio.to_thread.run_sync(self._save, os.fspath(path))

    def _save(self, path: str) -> int:
        position = self.file.tell()
        self.file.seek(0)
        try:
            with open(path, "wb") as target:
                shutil.copyfileobj(self.file, target, 1024 * 1024)
                return target.tell()
        finally:
            self.file.seek(position)

    async def close(self) -> None:
        """Free the memory or the temporary file (the tool calls it after the response)."""
        if self.in_memory:
            self.file.close()
        else:
            await anyio.to_thread.run_sync(self.file.close)

    def __repr__(self) -> str:
        return (
            f"UploadFile(filename={self.filename!r}, content_type={self.content_type!r}, "
            f"size={self.size})"
        )


def _spooled() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
