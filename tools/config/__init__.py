"""What plugins and tools receive from the ``config`` tool.

::

    from tools.config import Config

    class PaymentsPlugin(Plugin):
        def __init__(self, config: Config):
            self.url = config.get("PAYMENTS_URL", "http://localhost:9000")
            self.timeout = config.get_float("PAYMENTS_TIMEOUT", 5.0)
"""

from __future__ import annotations

from .config_tool import Config

__all__ = ("Config",)
