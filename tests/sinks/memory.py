"""In-memory Kafka for the sink's loop: a cluster, a consumer, a publisher and a journaled store.

:class:`sinks.loop.SinkLoop` takes its clients as parameters (:mod:`sinks.clients`); these fakes
implement those Protocols so that exactly-once, replay and revoke cases run in milliseconds,
against real chDB but without a broker. They model what the loop relies on and no more:

- A :class:`MemoryCluster` holds topics (partitions are lists of messages, an offset is an index)
  and consumer groups (committed offset and metadata per partition, members in join order).
- A :class:`MemoryConsumer` joins its group on ``subscribe`` and leaves it on ``close``. Every
  join or leave starts a new generation, assigned eagerly with Kafka's range assignor; a member
  learns of it inside its next ``consume``: first ``on_revoke`` with everything it held (still
  held, so its commits there succeed, as on a real broker while the group prepares the
  rebalance), then ``on_assign`` with its share once no other member still holds any of it.
  ``close`` revokes what is held, as librdkafka's close does. A commit of a partition the
  consumer does not hold (or one the test ``refuse``\\s) raises KafkaException.
- ``consume`` returns at most ``max_messages`` messages a call, round robin over the assigned
  partitions, from each partition's position (its committed offset, else the earliest); with
  nothing to return it calls ``wait(timeout)``, by default advancing a :class:`ManualClock` that
  the loop also reads, so linger and idle exits cost no real time.
- A :class:`Journal` records reads, commits, rebalances, inserts and dead letters in the order
  they happen, on any thread; tests assert orders on it and act on it with :meth:`Journal.when`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message, TopicPartition

from schemas.codec import Codec
from sinks.clients import RebalanceCallback, SinkStore


class Event(NamedTuple):
    """One thing that happened, in journal order."""

    what: str  # read, commit, revoke, assign, insert, inserted, health, dead, flush
    partition: int  # -1 when not about one partition
    offset: int  # read: its offset; commit: the offset committed; insert(ed): the group's first
    metadata: str = ""  # commit: its metadata; insert(ed): the dedup token
    member: str = ""  # the consumer's name (read, commit, revoke, assign)
    topic: str = ""  # read, commit
    thread: int = 0  # the thread it happened on
    seq: int = 0  # its position in the journal


class Journal:
    """Events in the order they happen (on the loop's thread or the insert worker's)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._triggers: list[tuple[Callable[[Event], bool], Callable[[], None]]] = []

    def add(
        self, what: str, partition: int, offset: int, metadata: str = "", member: str = "", topic: str = ""
    ) -> None:
        """Record one event, then run (once) each trigger it matches."""
        with self._lock:
            event = Event(
                what, partition, offset, metadata, member, topic, threading.get_ident(), len(self.events)
            )
            self.events.append(event)
            fired = [t for t in self._triggers if t[0](event)]
            self._triggers = [t for t in self._triggers if t not in fired]
        for _, action in fired:
            action()

    def when(self, matches: Callable[[Event], bool], action: Callable[[], None]) -> None:
        """Run ``action`` once, right after the first event that ``matches``."""
        self._triggers.append((matches, action))

    def of(self, what: str, member: str | None = None, topic: str | None = None) -> list[Event]:
        """The events of one kind (of one member, about one topic)."""
        return [
            e
            for e in self.events
            if e.what == what and member in (None, e.member) and topic in (None, e.topic)
        ]


@dataclass
class ManualClock:
    """A monotonic clock that moves only when told to (the loop's ``clock`` and ``sleep``)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move on ``seconds`` (and let the insert worker thread run for a moment)."""
        self.now += max(seconds, 0.0)
        time.sleep(0.0002)


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    generation: int = 0
    offsets: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)

    def share(self, member: MemoryConsumer, partitions: Mapping[str, int]) -> list[tuple[str, int]]:
        """Kafka's range assignor: per topic, contiguous runs of partitions in member order."""
        mine: list[tuple[str, int]] = []
        for topic in member.topics:
            subscribed = [m for m in self.members if topic in m.topics]
            count, n = partitions.get(topic, 0), len(subscribed)
            i = subscribed.index(member)
            start = i * (count // n) + min(i, count % n)
            mine += [(topic, p) for p in range(start, start + count // n + (i < count % n))]
        return mine


class MemoryCluster:
    """Topics of partitions and consumer groups, in memory."""

    def __init__(self, partitions: int = 4, journal: Journal | None = None) -> None:
        """Every topic has ``partitions`` partitions (created on first use)."""
        self.partitions = partitions
        self.journal = journal or Journal()
        self._logs: dict[str, list[list[Message]]] = {}
        self._groups: dict[str, _Group] = {}

    def log(self, topic: str) -> list[list[Message]]:
        """The partitions of ``topic`` (messages by offset)."""
        return self._logs.setdefault(topic, [[] for _ in range(self.partitions)])

    def produce(self, topic: str, value: bytes, partition: int, key: bytes | None = None) -> int:
        """Append one message; its offset."""
        part = self.log(topic)[partition]
        part.append(Message(topic=topic, partition=partition, offset=len(part), key=key, value=value))
        return len(part) - 1

    def produce_all(self, topic: str, values: Sequence[bytes]) -> None:
        """Value i to partition i % partitions, in order (as the broker tests produce)."""
        for i, value in enumerate(values):
            self.produce(topic, value, i % self.partitions)

    def values(self, topic: str) -> list[bytes]:
        """Every message value of ``topic``, partition by partition."""
        return [bytes(m.value() or b"") for part in self.log(topic) for m in part]

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Partition -> the offset the next message would get."""
        return {p: len(part) for p, part in enumerate(self.log(topic))}

    def committed(self, group: str, topic: str) -> dict[int, tuple[int, str]]:
        """Partition -> (committed offset, metadata) of ``group``, for the partitions it committed."""
        offsets = self.group(group).offsets
        return {p: offsets[(t, p)] for (t, p) in offsets if t == topic}

    def group(self, name: str) -> _Group:
        """The consumer group ``name`` (empty until a member joins or commits)."""
        return self._groups.setdefault(name, _Group())

    def counts(self) -> dict[str, int]:
        """Partitions per topic, for the assignor."""
        return {topic: len(parts) for topic, parts in self._logs.items()}


class MemoryConsumer:
    """A consumer of a :class:`MemoryCluster` with what :class:`sinks.clients.SinkConsumer` needs."""

    def __init__(
        self,
        cluster: MemoryCluster,
        group: str,
        name: str = "consumer",
        max_messages: int | None = None,
        wait: Callable[[float], None] | None = None,
    ) -> None:
        """A member ``name`` of ``group``; ``consume`` returns at most ``max_messages`` a call."""
        self.cluster = cluster
        self.name = name
        self.max_messages = max_messages
        self.wait = wait or time.sleep
        self.topics: list[str] = []
        self.refuse: set[tuple[str, int]] = set()  # commits of these partitions raise KafkaException
        self._group_name = group
        self._group = cluster.group(group)
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._generation: int | None = None  # the generation of the partitions held
        self._held: dict[tuple[str, int], int] = {}  # partition -> position
        self._turn = 0
        self._closed = False

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the group for ``topics`` (again with the same topics: only the callbacks change)."""
        self._check_open()
        self._on_assign, self._on_revoke = on_assign, on_revoke
        for topic in topics:
            self.cluster.log(topic)
        if self in self._group.members and topics == self.topics:
            return
        self.topics = list(topics)
        if self not in self._group.members:
            self._group.members.append(self)
        self._group.generation += 1

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        """Serve a pending rebalance, then up to ``num_messages`` (and ``max_messages``) messages."""
        self._check_open()
        messages: list[Message] = []
        if self._rebalance():
            limit = min(num_messages, self.max_messages or num_messages)
            messages = self._fetch(limit)
        if not messages:
            self.wait(max(timeout, 0.0))
        return messages

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """The group's committed offsets and metadata (OFFSET_INVALID where none)."""
        self._check_open()
        out = []
        for tp in partitions:
            offset, metadata = self._group.offsets.get((tp.topic, tp.partition), (OFFSET_INVALID, ""))
            out.append(TopicPartition(tp.topic, tp.partition, offset, metadata=metadata))
        return out

    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> list[TopicPartition]:
        """Commit offsets and metadata of partitions this consumer holds; KafkaException otherwise."""
        self._check_open()
        assert asynchronous is False, "the sink commits synchronously"
        keys = [(tp.topic, tp.partition) for tp in offsets]
        if any(k not in self._held or k in self.refuse for k in keys):
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        for tp in offsets:
            self._group.offsets[(tp.topic, tp.partition)] = (tp.offset, tp.metadata or "")
            self.cluster.journal.add(
                "commit", tp.partition, tp.offset, tp.metadata or "", self.name, tp.topic
            )
        return [
            TopicPartition(tp.topic, tp.partition, tp.offset, metadata=tp.metadata or "") for tp in offsets
        ]

    def close(self) -> None:
        """Revoke what is held (as librdkafka's close does) and leave the group."""
        if self._closed:
            return
        self._revoke()
        if self in self._group.members:
            self._group.members.remove(self)
            self._group.generation += 1
        self._closed = True

    def assignment(self) -> list[TopicPartition]:
        """The partitions held now."""
        return [TopicPartition(t, p) for t, p in self._held]

    # -- inside ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Consumer closed")

    def _revoke(self) -> None:
        if self._generation is None:
            return
        held = [TopicPartition(t, p) for t, p in self._held]
        self.cluster.journal.add("revoke", -1, len(held), member=self.name)
        if self._on_revoke is not None:
            self._on_revoke(self, held)  # still held: commits in the callback go through
        self._held.clear()
        self._generation = None

    def _rebalance(self) -> bool:
        """Catch up with the group's generation; False while the share is still held elsewhere."""
        group = self._group
        if self._generation == group.generation:
            return True
        self._revoke()
        share = group.share(self, self.cluster.counts())
        if any(other is not self and key in other._held for other in group.members for key in share):
            return False  # the others revoke first (eager rebalance)
        self._generation = group.generation
        for topic, p in share:
            offset, _ = group.offsets.get((topic, p), (OFFSET_INVALID, ""))
            self._held[(topic, p)] = max(offset, 0)  # auto.offset.reset=earliest
        self.cluster.journal.add("assign", -1, len(share), member=self.name)
        if self._on_assign is not None:
            self._on_assign(self, [TopicPartition(t, p) for t, p in share])
        return True

    def _fetch(self, limit: int) -> list[Message]:
        held = list(self._held)
        messages: list[Message] = []
        idle = 0
        while len(messages) < limit and held and idle < len(held):
            key = held[self._turn % len(held)]
            self._turn += 1
            part = self.cluster.log(key[0])[key[1]]
            position = self._held[key]
            if position >= len(part):
                idle += 1
                continue
            idle = 0
            messages.append(part[position])
            self._held[key] = position + 1
            self.cluster.journal.add("read", key[1], position, member=self.name, topic=key[0])
        return messages


class MemoryPublisher:
    """Dead letters into a :class:`MemoryCluster`: queued by ``send``, delivered by ``flush``."""

    def __init__(self, cluster: MemoryCluster) -> None:
        """A publisher to ``cluster``; ``sent`` holds (topic, value) in delivery order."""
        self.cluster = cluster
        self.sent: list[tuple[str, bytes]] = []
        self._queued: list[tuple[str, bytes, bytes | None]] = []
        self._turn = 0

    def send(self, topic: str, value: bytes, packets: int = 1, key: bytes | None = None) -> None:
        """Queue one message (journaled as ``dead`` with its index in ``sent``)."""
        self.cluster.journal.add("dead", -1, len(self.sent) + len(self._queued))
        self._queued.append((topic, value, key))

    def flush(self, timeout: float = 60.0) -> None:
        """Deliver every queued message, partitions in turn."""
        for topic, value, key in self._queued:
            self.cluster.produce(topic, value, self._turn % self.cluster.partitions, key)
            self._turn += 1
            self.sent.append((topic, value))
        if self._queued:
            self.cluster.journal.add("flush", -1, len(self.sent))
        self._queued.clear()


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs (no commit)."""


class RecordingStore:
    """A real store whose inserts are journaled, and may be slowed or end in a :class:`Crash`."""

    def __init__(
        self, store: SinkStore, journal: Journal, seconds: float = 0.0, crash_after: int | None = None
    ) -> None:
        """Each Native insert takes ``seconds`` more; the ``crash_after``-th one crashes once stored."""
        self.store = store
        self.codec: Codec = store.codec
        self.journal = journal
        self.seconds = seconds
        self.crash_after = crash_after
        self.tokens: list[str] = []  # dedup tokens of the inserts stored, in order

    def insert_native(
        self, table: str, columns: Sequence[str], block: bytes, dedup_token: str | None = None
    ) -> None:
        """Journal ``insert``, insert into the real store, journal ``inserted``."""
        token = dedup_token or ""
        partition, first = _token_group(token)
        self.journal.add("insert", partition, first, token)
        time.sleep(self.seconds)
        self.store.insert_native(table, columns, block, dedup_token)
        self.journal.add("inserted", partition, first, token)
        self.tokens.append(token)
        if self.crash_after is not None and len(self.tokens) == self.crash_after:
            raise Crash(token)

    def insert_sensor_health(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Journal ``health`` and insert into the real store."""
        self.journal.add("health", -1, len(records))
        return self.store.insert_sensor_health(records)


def _token_group(token: str) -> tuple[int, int]:
    """(partition, first offset) of a dedup token ``topic:partition:first-last``."""
    _, partition, offsets = token.rsplit(":", 2)
    return int(partition), int(offsets.split("-")[0])
