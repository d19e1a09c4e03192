"""Local fan-out: subscriptions, their bounded buffers, and how an event is queued to them.

Every active subscription owns one bounded anyio memory object stream and one
consumer task (``_delivery.py``), so each subscriber sees events in publish
order and runs its handler one event at a time.

When a subscriber's buffer is full, ``publish`` waits for room (backpressure)
instead of dropping the event or growing memory: up to
``EVENT_BUS_PUBLISH_TIMEOUT`` seconds, then it raises :class:`PublishTimeout`
naming the subscriber. Subscribers queued before the full one already have the
event; the ones after it do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from microcore import Event
from microcore.events import SubjectTrie
from microcore.tooling import Owner, Registration

from ._backend import Reply
from ._errors import PublishTimeout
from ._stats import SubscriptionState

__all__ = ("BROADCAST", "RESPOND", "SUBSCRIBE", "EventHandler", "Fanout", "Request", "Subscription")

# ``async def handler(event: Event) -> Any``; a non-None return answers a request
EventHandler = Callable[[Event[Any]], Coroutine[Any, Any, Any]]

# How a subscription takes part: events and requests (a non-None return answers), events
# only and on every replica, or requests only (every return value answers, None included).
SUBSCRIBE, BROADCAST, RESPOND = "subscribe", "broadcast", "respond"


class Request:
    """A request travelling through a subscriber's buffer (plain events travel bare)."""

    __slots__ = ("event", "reply", "reported")

    def __init__(self, event: Event, reply: Reply) -> None:
        self.event = event
        self.reply = reply
        self.reported = False  # this subscriber already answered or failed it


Item = Event | Request


class Subscription:
    """One ``subscribe(pattern, handler)`` of one plugin."""

    __slots__ = (
        "attempt",
        "delivered",
        "done",
        "error",
        "failed",
        "guard",
        "handler",
        "identity",
        "mode",
        "owner",
        "pattern",
        "payload_type",
        "receive",
        "registration",
        "reply_type",
        "retries",
        "room",
        "scope",
        "send",
        "since",
        "state",
        "task_id",
        "waiting",
    )

    def __init__(
        self,
        owner: Owner,
        pattern: str,
        handler: EventHandler,
        retries: int,
        mode: str = SUBSCRIBE,
        payload_type: Any = None,
        reply_type: Any = None,
    ) -> None:
        self.owner = owner
        self.identity = owner.identity
        self.pattern = pattern
        self.handler = handler
        self.retries = retries
        self.mode = mode
        self.payload_type = payload_type  # what ``Event[T]`` in the handler declares, or None
        self.reply_type = reply_type  # a responder's return annotation, or None
        self.state = SubscriptionState.PENDING
        self.registration: Registration | None = None
        self.send: MemoryObjectSendStream[Item] | None = None
        self.receive: MemoryObjectReceiveStream[Item] | None = None
        self.room: anyio.Event | None = None  # publishers waiting for a free slot, if any
        self.waiting: asyncio.Future[None] | None = None  # the consumer, while its buffer is empty
        self.scope = anyio.CancelScope()  # cancels the consumer (unload or drain past deadline)
        self.done = anyio.Event()  # set when the consumer has exited
        self.task_id: int | None = None
        self.guard: anyio.CancelScope | None = None  # the watchdog cancels it on overrun
        self.since = 0.0  # monotonic start of the handler call in progress, 0.0 when idle
        self.attempt = 0  # attempt number of the handler call in progress
        self.error: BaseException | None = None  # how that attempt failed, kept across guards
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        """An item was queued, or the buffer closed: wake the consumer if it waits for one.

        Every ``send_nowait`` and ``send.close()`` is followed by this. The consumer waits
        on a bare asyncio future (the bus runs on asyncio) instead of in the stream's
        ``receive()``, whose checkpoint, anyio event and cancellation check per wait cost
        more than the rest of a hand-over; items always go through the buffer.
        """
        waiting = self.waiting
        if waiting is not None:
            self.waiting = None
            if not waiting.done():
                waiting.set_result(None)

    async def next_item(self) -> None:
        """Wait for :meth:`wake` (the caller found the buffer empty and awaited nothing since)."""
        waiting = self.waiting = asyncio.get_running_loop().create_future()
        try:
            await waiting
        finally:
            self.waiting = None

    def made_room(self) -> None:
        """Wake publishers waiting for a slot (the consumer took an item, or the buffer closed)."""
        room = self.room
        if room is not None:
            self.room = None
            room.set()

    @property
    def queued(self) -> int:
        return 0 if self.receive is None else self.receive.statistics().current_buffer_used

    def __repr__(self) -> str:
        return f"<Subscription {self.identity} {self.pattern!r} {self.state.value}>"


class Fanout:
    """The bus's :class:`~._backend.Sink`: queue an event to every matching local subscription."""

    def __init__(self, *, buffer: int, publish_timeout: float) -> None:
        self.buffer = buffer
        self.publish_timeout = publish_timeout
        self.trie: SubjectTrie[Subscription] = SubjectTrie()
        self.outstanding = 0  # items queued or being handled, across all subscriptions
        self.idle: anyio.Event | None = None  # set when ``outstanding`` drops to 0 (drain)
        # tests: names whose handlers are silenced (``EventBusTool.silence``), and the owners
        # (test stubs) that still receive them
        self.silenced: dict[str, int] = {}
        self.exempt: set[Owner] = set()

    def open(self, sub: Subscription) -> None:
        """Give ``sub`` its buffer and make it visible to publishers."""
        sub.send, sub.receive = anyio.create_memory_object_stream[Item](self.buffer)
        sub.state = SubscriptionState.ACTIVE
        self.trie.add(sub.pattern, sub)

    def close(self, sub: Subscription) -> None:
        """Hide ``sub`` from publishers; its consumer finishes what is already queued."""
        if sub.state is SubscriptionState.ACTIVE:
            self.trie.remove(sub.pattern, sub)
            sub.state = SubscriptionState.CLOSING
            if sub.send is not None:
                sub.send.close()
            sub.wake()
            sub.made_room()
        elif sub.state is SubscriptionState.PENDING:
            sub.state = SubscriptionState.CLOSED

    def settle(self, count: int) -> None:
        """``count`` items left the buffers (handled or abandoned)."""
        self.outstanding -= count
        if self.outstanding <= 0 and self.idle is not None:
            self.idle.set()

    async def dispatch(
        self, event: Event, reply: Reply | None = None, *, done: set[Subscription] | None = None
    ) -> int:
        """Queue ``event`` (or the request, with ``reply``) for every subscription it reaches;
        how many took it. With ``done``, subscriptions in it are skipped and those that take
        it are added (the outbox relay retries an event without handing it twice to any)."""
        item: Item = event if reply is None else Request(event, reply)
        skip = RESPOND if reply is None else BROADCAST  # responders answer requests only
        queued = 0
        for sub in self.trie.match(event.name):
            send = sub.send
            if send is None or sub.mode == skip or (done is not None and sub in done):
                continue
            if self.silenced and event.name in self.silenced and sub.owner not in self.exempt:
                continue
            self.outstanding += 1
            try:
                send.send_nowait(item)
                sub.wake()
            except anyio.WouldBlock:
                if not await self.wait_for_room(sub, send, item):
                    continue
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.settle(1)  # released between the lookup and now: not a subscriber
                continue
            queued += 1
            if done is not None:
                done.add(sub)
        return queued

    async def wait_for_room(
        self, sub: Subscription, send: MemoryObjectSendStream[Item], item: Item
    ) -> bool:
        """Backpressure: wait for room in a full buffer; False if ``sub`` went away meanwhile.

        Only ``send_nowait`` ever queues the item, so whether it was queued is
        known exactly, also when the publisher is cancelled while waiting (anyio's
        blocking ``send`` can hand the item over and still raise the cancellation).
        """
        queued = False
        try:
            with anyio.fail_after(self.publish_timeout):
                while not queued:
                    room = sub.room
                    if room is None:
                        room = sub.room = anyio.Event()
                    await room.wait()
                    try:
                        send.send_nowait(item)
                        queued = True
                        sub.wake()
                    except anyio.WouldBlock:
                        continue  # another publisher took the slot first
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        except TimeoutError:
            raise PublishTimeout(
                f"subscriber {sub.identity!r} ({sub.pattern!r}) has had a full buffer "
                f"({self.buffer} events) for {self.publish_timeout} s; its handler is too slow "
                "or hung. Raise EVENT_BUS_BUFFER or EVENT_BUS_PUBLISH_TIMEOUT, or speed it up"
            ) from None
        finally:
            if not queued:
                self.settle(1)  # may be the last outstanding item: drain must hear of it
        return queued
