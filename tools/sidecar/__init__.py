"""The ``sidecar`` tool: plugins in any language (``domains/<d>/plugins/<name>.sidecar.toml``).

Plugins do not use it; the README's "Sidecars" section describes the declaration and the
protocol, ``tools/sidecar/node/microcore_sidecar.js`` is the reference client (Node.js).
"""

from __future__ import annotations

from ._instance import SidecarError, SidecarUnavailable

__all__ = ("SidecarError", "SidecarUnavailable")
