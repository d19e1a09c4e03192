"""What the bus reports about its subscriptions, as declared types (``/system/*``, metrics)."""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ("DeliveryOutcome", "SubscriptionState", "SubscriptionStats")


class SubscriptionState(StrEnum):
    """Where a subscription is in its life."""

    PENDING = "pending"  # the owner is booting: registered but not receiving
    ACTIVE = "active"  # in the trie, consumer running
    CLOSING = "closing"  # out of the trie, consumer finishing its backlog
    CLOSED = "closed"


class SubscriptionStats(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription now: who, to what, and how its deliveries went.

    >>> [s.pattern for s in event_bus.subscriptions() if s.queued]
    """

    subscriber: str  # plugin identity
    pattern: str
    retries: int
    state: SubscriptionState
    queued: int  # events waiting in its buffer
    delivered: int
    failed: int  # events that failed every attempt (dead-lettered)


class DeliveryOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """Handled events of one name by one subscriber since boot (kept across hot reloads)."""

    name: str  # event name, or ``_other`` past the cap on counted pairs
    subscriber: str
    delivered: int
    failed: int
