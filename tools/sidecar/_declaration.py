"""A sidecar's declaration: ``domains/<domain>/plugins/<name>.sidecar.toml``.

::

    doc = "Formats prices in the shop's locale."
    command = ["node", "price_format.js"]     # or one string, split like a shell would
    cwd = "."                                 # relative to this file's folder (the default)
    watch = ["price_format.js", "lib/*.js"]   # files whose change restarts it (globs, from cwd)
    transport = "stdio"                       # or "nats" / "auto" (see below)

    [env]                                     # added to the app's environment
    PRICE_LOCALE = "de-DE"

    [declares]                                # what it may register and what it sends
    routes = ["GET /products/{product_id:int}/price"]
    subscribes = ["product.created"]
    responds = ["price.format"]
    publishes = ["price.formatted"]
    requests = []

``[declares]`` is read statically by ``microcore check`` and the manifest (the same scan as
a Python plugin's source); at run time a sidecar may register only what it declares.
Without ``watch``, the command's arguments that are files under ``cwd`` are watched.
``transport`` is how the program speaks the protocol: ``"stdio"`` (the default: JSON lines
over its stdin and stdout), ``"nats"`` (NATS messages on subjects of its own; needs
``EVENT_BUS_URL=nats://...``) or ``"auto"`` (NATS when the bus is NATS, else stdio).
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from microcore.tooling import ConfigurationError, scan_file

__all__ = ("SUFFIX", "Declaration", "Transport", "read_declaration")

SUFFIX = ".sidecar.toml"
Transport = Literal["stdio", "nats", "auto"]


class _File(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    command: str | list[str]
    cwd: str = "."
    env: dict[str, str] = {}
    watch: list[str] = []
    doc: str = ""
    transport: Transport = "stdio"
    declares: dict[str, list[str]] = {}


class Declaration(msgspec.Struct, frozen=True, kw_only=True):
    """One sidecar as declared: how to run it and what it may register."""

    identity: str  # <domain>.<name>
    domain: str
    file: Path  # the .sidecar.toml, absolute
    command: tuple[str, ...]
    cwd: Path
    env: dict[str, str]
    watch: tuple[str, ...]
    doc: str
    transport: Transport
    routes: frozenset[tuple[str, str]]  # (METHOD, path)
    patterns: frozenset[str]  # subscribes + responds
    digest: bytes  # the declaration's text: an edit restarts the sidecar

    def watches(self, path: Path) -> bool:
        """Whether a change to ``path`` (absolute; not the declaration) restarts it."""
        try:
            rel = path.relative_to(self.cwd)
        except ValueError:
            return False
        return any(rel.match(pattern) or str(rel) == pattern for pattern in self.watch)


def read_declaration(root: Path, file: Path) -> Declaration:
    """Parse and check one declaration; a ``ConfigurationError`` says what is wrong and where."""
    file = file.resolve()
    rel = file.relative_to(root.resolve())
    where = f"sidecar declaration {rel}"
    try:
        raw = file.read_bytes()
        parsed = msgspec.convert(tomllib.loads(raw.decode("utf-8")), _File)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc
    scan = scan_file(root, file)
    if scan.error is not None:
        raise ConfigurationError(f"{where}: {scan.error}")
    command = tuple(
        shlex.split(parsed.command) if isinstance(parsed.command, str) else parsed.command
    )
    if not command:
        raise ConfigurationError(f"{where}: command is empty; name the program to run")
    cwd = (file.parent / parsed.cwd).resolve()
    if not cwd.is_dir():
        raise ConfigurationError(f"{where}: cwd {parsed.cwd!r} is not a folder ({cwd})")
    watch = parsed.watch or [arg for arg in command[1:] if (cwd / arg).is_file()]
    domain = rel.parts[1]
    return Declaration(
        identity=f"{domain}.{file.name.removesuffix(SUFFIX)}",
        domain=domain,
        file=file,
        command=command,
        cwd=cwd,
        env=parsed.env,
        watch=tuple(watch),
        doc=parsed.doc,
        transport=parsed.transport,
        routes=frozenset((c.method, c.name) for c in scan.calls if c.method),
        patterns=frozenset(c.name for c in scan.calls if c.kind in ("subscribe", "respond")),
        digest=raw,
    )
