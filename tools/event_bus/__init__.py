"""The ``event_bus`` tool's public types: what plugins annotate and what other tools read.

>>> from tools.event_bus import EventBus
>>> class NotifyPlugin(Plugin):
...     def __init__(self, event_bus: EventBus) -> None:
...         self.bus = event_bus
"""

from microcore import NoResponder, RequestTimeout

from ._errors import BusClosed, DeliveryTimeout, EventPayloadError, PublishTimeout, RequestFailed
from ._handle import EventBus, EventHandler
from ._outbox import OutboxUnavailable
from ._stats import DeliveryOutcome, SubscriptionState, SubscriptionStats

__all__ = (
    "BusClosed",
    "DeliveryOutcome",
    "DeliveryTimeout",
    "EventBus",
    "EventHandler",
    "EventPayloadError",
    "NoResponder",
    "OutboxUnavailable",
    "PublishTimeout",
    "RequestFailed",
    "RequestTimeout",
    "SubscriptionState",
    "SubscriptionStats",
)
