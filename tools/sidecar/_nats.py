"""The NATS transport: protocol messages as NATS messages on subjects of one run's own.

Each run of a sidecar gets two subjects, named from the program's side::

    <EVENT_BUS_STREAM>_sidecar.<domain>.<name>.<run>.in    kernel -> program
    <EVENT_BUS_STREAM>_sidecar.<domain>.<name>.<run>.out   program -> kernel

``<run>`` is a random token, new for each start: a reload's new run, and the same sidecar
run by another replica of the app, never read each other's messages. The subjects sit
beside the bus's JetStream stream (``<stream>.>``), so nothing of them is stored. A message
is one protocol object as JSON (UTF-8; a trailing newline is allowed), no headers, no reply
subject: answers travel back by ``id`` on the other subject, exactly as over stdio.

The kernel opens a core-NATS connection of its own per run (never the event bus's), and
subscribes to ``.out`` before it starts the program, so the program's ``hello`` is never
lost. nats-py is imported on first use: only projects whose bus is NATS install it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

__all__ = ("NatsLink", "TooLarge", "subjects")

_CONNECT_TIMEOUT = 2.0


def subjects(root: str, identity: str) -> tuple[str, str]:
    """A new run's ``(in, out)`` subjects (``identity`` is ``<domain>.<name>``)."""
    base = f"{root}_sidecar.{identity}.{secrets.token_hex(6)}"
    return f"{base}.in", f"{base}.out"


class NatsLink:
    """One run's connection: ``open`` before the program starts, ``messages`` what it sends,
    ``send`` to it, ``close`` once it has ended."""

    def __init__(self, url: str, identity: str, root: str) -> None:
        self.url = url
        self.identity = identity
        self.subject_in, self.subject_out = subjects(root, identity)
        self._servers = [part.strip() for part in url.split(",") if part.strip()]
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._closing = False
        self._log = structlog.get_logger("microcore.sidecar", tool="sidecar", plugin=identity)

    def env(self) -> dict[str, str]:
        """What the program is told (the README's "Sidecars over NATS")."""
        return {
            "MICROCORE_SIDECAR_TRANSPORT": "nats",
            "MICROCORE_SIDECAR_NATS_URL": self.url,
            "MICROCORE_SIDECAR_SUBJECT_IN": self.subject_in,
            "MICROCORE_SIDECAR_SUBJECT_OUT": self.subject_out,
        }

    async def open(self) -> None:
        """Connect and subscribe to ``.out`` (confirmed by the server); a ``ConnectionError``
        says why not."""
        import nats.errors

        try:
            await self._open()
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            with anyio.CancelScope(shield=True):
                await self.close()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    async def _open(self) -> None:
        import nats

        with anyio.fail_after(_CONNECT_TIMEOUT * (len(self._servers) + 1)):
            self._nc = await nats.connect(
                servers=self._servers,
                name=f"microcore-sidecar:{self.identity}",
                connect_timeout=int(_CONNECT_TIMEOUT),
                max_reconnect_attempts=-1,  # the program's process, not NATS, tells it ended
                reconnect_time_wait=0.5,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
            self._sub = await self._nc.subscribe(self.subject_out)
            await self._nc.flush()

    async def messages(self) -> AsyncIterator[bytes]:
        """Each message the program sends, in order, until :meth:`close`."""
        assert self._sub is not None, "open() first"
        async for message in self._sub.messages:
            yield message.data

    async def send(self, data: bytes) -> None:
        """Publish one message to the program; :class:`TooLarge` over the server's
        ``max_payload``, ``ConnectionError`` when the connection is closed."""
        from nats.errors import ConnectionClosedError, MaxPayloadError

        nc = self._nc
        if nc is None:
            raise ConnectionError("the NATS connection is closed")
        try:
            await nc.publish(self.subject_in, data.rstrip(b"\n"))
        except MaxPayloadError:
            raise TooLarge(
                f"a message of {len(data)} bytes is over the NATS server's max_payload "
                f"({nc.max_payload} bytes)"
            ) from None
        except ConnectionClosedError as exc:
            raise ConnectionError("the NATS connection is closed") from exc

    async def close(self) -> None:
        self._closing = True
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with anyio.move_on_after(_CONNECT_TIMEOUT):
                await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        self._log.warning("sidecar_nats_error", error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._log.warning("sidecar_nats_disconnected", servers=self.url)

    async def _on_reconnected(self) -> None:
        self._log.info("sidecar_nats_reconnected", servers=self.url)


class TooLarge(Exception):
    """A message over the NATS server's ``max_payload``."""
