"""Event names: the one grammar the bus, ``microcore check``, the system tool and tests share.

Names are dot-separated tokens (``product.created``); in a subscription pattern
``*`` matches one token and ``>`` (last only) one or more trailing tokens::

    >>> from microcore.events import matches
    >>> matches("order.>", "order.line.added")
    True
"""

from __future__ import annotations

from ._core.errors import EventNameError
from ._core.event import Event
from ._names import DLQ_PREFIX, SubjectTrie, check_name, check_pattern, matches

__all__ = (
    "DLQ_PREFIX",
    "Event",
    "EventNameError",
    "SubjectTrie",
    "check_name",
    "check_pattern",
    "matches",
)
