"""The NATS backend (``EVENT_BUS_URL=nats://host:4222``): the same bus across replicas.

``backend`` (the :class:`NatsBackend`: connection, JetStream consumers, requests),
``acks`` (what a replica owes JetStream for the events in its hands), ``replies``
(how consumers' outcomes become acks and request replies), ``wire`` (subjects,
consumer names and msgpack frames). nats-py is optional: only NATS users install it.
"""

from .backend import NatsBackend, NatsUnavailable

__all__ = ("NatsBackend", "NatsUnavailable")
