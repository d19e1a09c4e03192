"""``python -m microcore``: the same command line as ``microcore``."""

from __future__ import annotations

from microcore._dev.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
