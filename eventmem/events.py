"""Event types: the immutable facts eventmem appends to a session's log.

Events are frozen msgspec structs sharing one tagged base, stored as JSON (the ``data``
column) and decoded with one typed decoder for the whole union.

Schema evolution rules (each stored event must decode forever):

* a new field always has a default, so events written before it still decode;
* a stored field never changes type or meaning, and is never removed or renamed;
* a new kind of event is a new tagged class; the tags are never reused.

``tests/fixtures/`` keeps events as written by earlier versions, and a test decodes them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Literal

import msgspec

from eventmem.errors import InvalidInputError
from eventmem.messages import Message, check_text, decode_trusted
from eventmem.rules import (
    MAX_COUNT,
    check_count,
    check_counter_name,
    check_limit,
    validate_session_id,
)
from eventmem.steps import Action, check_action

__all__ = [
    "CHECKPOINT_KINDS",
    "ERASED_DATA",
    "GENESIS_HASH",
    "Blob",
    "ChannelValue",
    "CheckpointSaved",
    "CheckpointWrite",
    "CheckpointWritesSaved",
    "CheckpointsDeleted",
    "ContentErased",
    "Event",
    "EventData",
    "MemoryCleared",
    "MessagesAppended",
    "MessagesRetracted",
    "PruneMode",
    "SessionErased",
    "SessionForked",
    "SessionSealed",
    "StepRecorded",
    "StoredEvent",
    "SummaryRecorded",
    "TurnSaved",
    "Version",
    "ViewRef",
    "ViewRewound",
    "chain_hash",
    "check_event",
    "content_digest",
    "decode_event",
    "encode_event",
    "event_hash",
]


# Untracked by the garbage collector, like the messages it holds (see messages.py).
class EventData(msgspec.Struct, frozen=True, tag_field="kind", omit_defaults=True, gc=False):
    """Base of every event payload; the ``kind`` tag names the concrete type."""


PruneMode = Literal["langchain", "pair_safe"]


class TurnSaved(EventData, tag="turn", frozen=True, omit_defaults=True):
    """One ``save_context`` call: the messages it appends and what they cost.

    ``tokens[i]`` is the count of ``messages[i]`` under the scheme ``counter``;
    ``overhead`` is that scheme's count for an empty list. ``max_token_limit`` is the
    limit in force for this save. ``recount`` is set when the scheme changed since the
    previous save: the new counts of the messages visible before this save, oldest first.

    An agent turn also names the positions of its [`StepRecorded`][eventmem.StepRecorded] events in
    ``steps``; their messages enter the buffer between ``messages[0]`` (the human input)
    and the rest. ``step_recount`` holds their counts under ``counter`` when the steps
    were counted with another scheme. ``prune`` is the pruning rule of this save.
    ``abandoned`` names pending steps recorded live by another run (one that died before
    its save): they stay in the log but never enter the buffer.
    """

    messages: tuple[Message, ...]
    tokens: tuple[int, ...]
    counter: str
    overhead: int
    max_token_limit: int
    model: str | None = None
    recount: tuple[int, ...] | None = None
    steps: tuple[int, ...] = ()
    step_recount: tuple[int, ...] | None = None
    prune: PruneMode = "langchain"
    abandoned: tuple[int, ...] = ()


class StepRecorded(EventData, tag="step", frozen=True, omit_defaults=True):
    """One agent intermediate step (tool call + observation), recorded live or at save.

    ``messages`` is how the step reads in the buffer (already formatted, and without
    messages an earlier step of the same turn already carries); ``tokens`` their counts
    under ``counter``. The step joins the buffer with its turn's [`TurnSaved`][eventmem.TurnSaved].
    ``action`` and ``observation`` keep what the agent did and saw, for audit. ``run``
    identifies the memory object that recorded it live.
    """

    action: Action
    observation: str
    messages: tuple[Message, ...]
    tokens: tuple[int, ...]
    counter: str
    live: bool = False
    run: str | None = None


class MemoryCleared(EventData, tag="clear", frozen=True, omit_defaults=True):
    """One ``clear()`` call: every message so far leaves the buffer (and stays in the log)."""


class MessagesAppended(EventData, tag="messages", frozen=True, omit_defaults=True):
    """One [`History.append`][eventmem.History.append]: any messages, in order, and what
    they cost.

    ``tokens[i]`` is the count of ``messages[i]`` under ``counter`` (``overhead`` its
    count of an empty list); ``recount`` as in [`TurnSaved`][eventmem.TurnSaved].
    ``max_tokens`` is the bound in force (``None``: no bound, nothing is pruned);
    ``prune`` the pruning rule; ``keep_system`` pins a system or developer message that
    begins the history (since the last clear), as ``trim_messages(include_system=True)``.
    """

    messages: tuple[Message, ...]
    tokens: tuple[int, ...]
    counter: str
    overhead: int
    max_tokens: int | None = None
    model: str | None = None
    recount: tuple[int, ...] | None = None
    prune: PruneMode = "pair_safe"
    keep_system: bool = True


class MessagesRetracted(EventData, tag="retract", frozen=True, omit_defaults=True):
    """One [`History.pop`][eventmem.History.pop]: the newest ``count`` messages of the
    view leave it (and stay in the log)."""

    count: int


class SummaryRecorded(EventData, tag="summary", frozen=True, omit_defaults=True):
    """A running summary of the messages a summary-buffer save pruned (LangChain's
    ``ConversationSummaryBufferMemory``): it follows that save's
    [`TurnSaved`][eventmem.TurnSaved] at once, in the same write.

    ``summary`` is the new summary, made by the model ``model`` from the prompt whose
    template has the SHA-256 digest ``prompt_sha256``, the summary in force before
    (that of the event at position ``previous``; 0: none, the empty summary) and the
    pruned messages. Those are the buffer's messages numbered ``first_seq`` up to (not
    including) ``end_seq``: exactly the ones the turn pruned. The first of them is held
    by the event at ``first_position``, whose chain hash is ``first_hash``; the last by
    the event at ``last_position``, whose chain hash is ``last_hash`` (hex). The
    summarised messages stay in the log.
    """

    summary: str
    first_seq: int
    end_seq: int
    first_position: int
    last_position: int
    first_hash: str
    last_hash: str
    model: str
    prompt_sha256: str
    previous: int = 0


class SessionForked(EventData, tag="fork", frozen=True, omit_defaults=True):
    """The first event of a fork ([`Store.fork`][eventmem.Store.fork]): the session's
    history up to position ``at`` is that of session ``parent`` (nothing is copied), and
    this event is at position ``at + 1``, chained to the parent's event at ``at``, whose
    chain hash is ``parent_hash`` (hex; ``at`` 0: the genesis hash, 64 zeros). Positions
    continue from there, so the fork's positions up to ``at`` name the parent's events.
    """

    parent: str
    at: int
    parent_hash: str


class ViewRef(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A message a rewind restores: ``messages[index]`` of the session's event at
    ``position`` (an event of the fork's parent for a position it inherited), counted
    ``tokens``."""

    position: int
    index: int
    tokens: int


class ViewRewound(EventData, tag="rewind", frozen=True, omit_defaults=True):
    """One [`Store.rewind`][eventmem.Store.rewind]: the view becomes again what it was
    right after position ``to``; the events after ``to`` stay in the log (rewound over).

    The event carries that view, so the fold applies it without going back: its
    messages (``view``, oldest first; ``pinned``: the first is a pinned system message),
    the counting scheme of their counts (``counter``, ``overhead``) and the summary in
    force (``summary``: the position of its event, 0 for none). Verify re-folds the log
    up to ``to`` and checks the event says exactly that.
    """

    to: int
    view: tuple[ViewRef, ...] = ()
    pinned: bool = False
    overhead: int = 0
    counter: str | None = None
    summary: int = 0


class SessionErased(EventData, tag="erase", frozen=True, omit_defaults=True):
    """The tombstone of an erasure ([`Store.erase`][eventmem.Store.erase]): the content
    of every earlier event of the session (its own, not a fork parent's) was removed
    from the store, each event keeping its content digest and chain hash, so the chain
    still verifies. ``reason`` says why and ``by`` who asked; the event's time says
    when. ``events`` is how many events were erased, and ``last_hash`` the chain hash of
    the last of them (hex). An erased session takes no more writes.
    """

    reason: str
    events: int
    last_hash: str
    by: str | None = None


class SessionSealed(EventData, tag="seal", frozen=True, omit_defaults=True):
    """Retention ([`Store.seal`][eventmem.Store.seal]): the content of the session's
    events before position ``before`` (its own, not a fork parent's) was removed from
    the store, each keeping its content digest and chain hash. The view held none of
    it; the event carries the view as it was (as a [`ViewRewound`][eventmem.ViewRewound]
    does: ``view``, ``pinned``, ``counter``, ``overhead``, ``summary``) and the head's
    ``next_seq`` and ``turn_position`` before it, so a fold starts over from here without
    the sealed history. ``events``: how many events this seal emptied (those sealed
    before stay so)."""

    before: int
    view: tuple[ViewRef, ...] = ()
    pinned: bool = False
    overhead: int = 0
    counter: str | None = None
    summary: int = 0
    events: int = 0
    next_seq: int = 0
    turn_position: int = 0


class ContentErased(EventData, tag="erased", frozen=True, omit_defaults=True):
    """What an erased event reads as: its content is gone (its ``kind`` column, digest
    and hash are as they were). Never appended: an erasure writes it in place of the
    content of the events before its tombstone."""


# -- LangGraph checkpoints (eventmem.integrations.langgraph) ------------------------------
# A version of a LangGraph channel: an int, a float or a str, as the saver made it.
Version = int | float | str


class Blob(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A value as a checkpoint serializer wrote it: its type tag and its bytes (opaque to
    eventmem, base64 in the event's JSON)."""

    type: str
    data: bytes


class ChannelValue(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True, gc=False):
    """The value of ``channel`` at ``version``, stored by the checkpoint that made it.

    ``value`` holds a whole value. A list is stored as its ``items`` instead, one blob per
    item: with ``extends`` naming an earlier version of the same channel (same thread and
    namespace), the value is that version's list followed by these items (a delta: a
    message list grows by its new messages only); without it, the list is these items.
    Neither: the channel has no value at this version (it was emptied).
    """

    channel: str
    version: Version
    value: Blob | None = None
    items: tuple[Blob, ...] | None = None
    extends: Version | None = None


class CheckpointSaved(EventData, tag="checkpoint", frozen=True, omit_defaults=True):
    """One LangGraph ``put``: checkpoint ``checkpoint_id`` of namespace ``ns``.

    ``checkpoint`` is the serialized checkpoint without its channel values and versions;
    ``versions`` are its channel versions, and ``values`` the values of the versions this
    checkpoint made (the others are stored by the checkpoints that made them).
    ``metadata`` is the serialized metadata; ``step``, ``source`` and ``run_id`` repeat
    three of its fields in plain form, for the log and for ``delete_for_runs``.
    """

    ns: str
    checkpoint_id: str
    checkpoint: Blob
    metadata: Blob
    versions: dict[str, Version] = {}
    values: tuple[ChannelValue, ...] = ()
    parent_id: str | None = None
    step: int | None = None
    source: str | None = None
    run_id: str | None = None


class CheckpointWrite(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One pending write of a task: its index (LangGraph's, special channels negative),
    its channel and the serialized value."""

    idx: int
    channel: str
    value: Blob


class CheckpointWritesSaved(EventData, tag="writes", frozen=True, omit_defaults=True):
    """One LangGraph ``put_writes``: a task's writes against checkpoint ``checkpoint_id``.

    A write whose ``(task_id, idx)`` the checkpoint already holds is kept as the first
    one for ``idx >= 0`` and replaced for a negative (special) ``idx``, as LangGraph's
    savers do; the log keeps both either way.
    """

    ns: str
    checkpoint_id: str
    task_id: str
    writes: tuple[CheckpointWrite, ...]
    task_path: str = ""


class CheckpointsDeleted(EventData, tag="checkpoints_deleted", frozen=True, omit_defaults=True):
    """A tombstone: checkpoints leave every read of the thread (and stay in the log).

    ``everything``: the whole thread (``delete_thread``, or ``prune`` with the
    ``"delete"`` strategy); otherwise the ``(ns, checkpoint_id)`` pairs listed, with their
    writes. ``reason`` names the call: ``"delete_thread"``, ``"delete_for_runs"`` (then
    ``run_ids`` are the runs asked for) or ``"prune"``.
    """

    reason: Literal["delete_thread", "delete_for_runs", "prune"]
    everything: bool = False
    checkpoints: tuple[tuple[str, str], ...] = ()
    run_ids: tuple[str, ...] = ()


CheckpointEvent = CheckpointSaved | CheckpointWritesSaved | CheckpointsDeleted
CHECKPOINT_KINDS = ("checkpoint", "writes", "checkpoints_deleted")

Event = (
    TurnSaved
    | MemoryCleared
    | StepRecorded
    | MessagesAppended
    | MessagesRetracted
    | SummaryRecorded
    | SessionForked
    | ViewRewound
    | SessionErased
    | SessionSealed
    | ContentErased
    | CheckpointSaved
    | CheckpointWritesSaved
    | CheckpointsDeleted
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """Canonical JSON bytes of an event (the stored ``data`` and the input to its hash)."""
    return _encoder.encode(event)


def decode_event(data: bytes | str, *, trusted: bool = False) -> Event:
    """Decode stored JSON into the typed event. ``trusted`` skips re-validating the
    messages: only for data eventmem itself wrote (see ``decode_trusted``)."""
    event: Event = decode_trusted(_decoder.decode, data) if trusted else _decoder.decode(data)
    return event


def check_event(event: Event) -> None:
    """Raise `InvalidInputError` unless ``event`` is one the live path could have
    written: what an import checks in each event of a file, beyond its decoding (which
    already checks each message). Consistency with the session's other events (step
    positions, recounts) is the fold's to check."""
    if isinstance(event, TurnSaved):
        roles = tuple(m.role for m in event.messages)
        if roles != ("human", "ai"):
            raise InvalidInputError(f"a turn holds a human then an ai message, not {roles}")
        _check_counts(event.tokens, len(event.messages), "tokens")
        check_counter_name(event.counter)
        check_count(event.overhead, "overhead")
        check_limit(event.max_token_limit)
        _check_model(event.model)
        if event.recount is not None:
            _check_counts(event.recount, None, "recount")
        if event.step_recount is not None:
            _check_counts(event.step_recount, None, "step_recount")
        for what, positions in (("steps", event.steps), ("abandoned", event.abandoned)):
            if positions and (list(positions) != sorted(set(positions)) or positions[0] < 1):
                raise InvalidInputError(f"{what} must be increasing positions, got {positions}")
    elif isinstance(event, MessagesAppended):
        if not event.messages:
            raise InvalidInputError("an append holds at least one message")
        _check_counts(event.tokens, len(event.messages), "tokens")
        check_counter_name(event.counter)
        check_count(event.overhead, "overhead")
        if event.max_tokens is not None:
            check_limit(event.max_tokens)
        _check_model(event.model)
        if event.recount is not None:
            _check_counts(event.recount, None, "recount")
    elif isinstance(event, MessagesRetracted):
        check_count(event.count, "a retracted count")
        if event.count < 1:
            raise InvalidInputError("a retraction takes at least one message")
    elif isinstance(event, SummaryRecorded):
        _check_summary(event)
    elif isinstance(event, SessionForked):
        _check_fork(event)
    elif isinstance(event, ViewRewound):
        _check_rewind(event)
    elif isinstance(event, SessionSealed):
        _check_seal(event)
    elif isinstance(event, SessionErased):
        check_text(event.reason, "reason")
        if event.by is not None:
            check_text(event.by, "by")
        check_count(event.events, "events")
        if not _HEX_DIGEST.fullmatch(event.last_hash):
            raise InvalidInputError("last_hash must be a SHA-256 digest in lower-case hex")
    elif isinstance(event, (CheckpointSaved, CheckpointWritesSaved, CheckpointsDeleted)):
        _check_checkpoint_event(event)
    elif isinstance(event, StepRecorded):
        check_action(event.action)
        check_text(event.observation, "observation")
        _check_counts(event.tokens, len(event.messages), "tokens")
        check_counter_name(event.counter)
        if event.run is not None:
            check_text(event.run, "run")


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _check_summary(event: SummaryRecorded) -> None:
    """A summary's text is storable, its range is one, and its digests are SHA-256 hex."""
    check_text(event.summary, "summary")
    _check_model(event.model)
    for what in ("first_seq", "end_seq", "previous"):
        check_count(getattr(event, what), what)
    if event.end_seq <= event.first_seq:
        raise InvalidInputError(
            f"a summary covers at least one message, not seqs {event.first_seq} to {event.end_seq}"
        )
    for what in ("first_position", "last_position"):
        check_count(getattr(event, what), what)
        if getattr(event, what) < 1:
            raise InvalidInputError(f"{what} must be a position (>= 1)")
    for what in ("first_hash", "last_hash", "prompt_sha256"):
        if not _HEX_DIGEST.fullmatch(getattr(event, what)):
            raise InvalidInputError(f"{what} must be a SHA-256 digest in lower-case hex")


def _check_fork(event: SessionForked) -> None:
    """A fork names a valid session, a position and a SHA-256 digest."""
    validate_session_id(event.parent)
    check_count(event.at, "at")
    if not _HEX_DIGEST.fullmatch(event.parent_hash):
        raise InvalidInputError("parent_hash must be a SHA-256 digest in lower-case hex")
    if event.at == 0 and event.parent_hash != GENESIS_HASH.hex():
        raise InvalidInputError("a fork at position 0 chains to the genesis hash")


def _check_rewind(event: ViewRewound) -> None:
    """A rewind names a position, and messages at positions up to it."""
    check_count(event.to, "to")
    check_count(event.overhead, "overhead")
    check_count(event.summary, "summary")
    if event.summary > event.to:
        raise InvalidInputError("the summary in force at a position is at or before it")
    _check_carried_view(event, "a rewind", 1, event.to)


def _check_seal(event: SessionSealed) -> None:
    """A seal names a position, and a view held at or after it."""
    check_count(event.before, "before")
    check_count(event.overhead, "overhead")
    check_count(event.events, "events")
    check_count(event.summary, "summary")
    check_count(event.next_seq, "next_seq")
    check_count(event.turn_position, "turn_position")
    if event.before < 1:
        raise InvalidInputError("before must be a position (>= 1)")
    if 0 < event.summary < event.before:
        raise InvalidInputError("a seal keeps the summary in force: it is not sealed")
    _check_carried_view(event, "a seal", event.before, MAX_COUNT)


def _check_carried_view(
    event: ViewRewound | SessionSealed, what: str, first: int, last: int
) -> None:
    """The view a rewind or a seal carries: its counting scheme, and messages of
    positions ``first`` to ``last``."""
    if event.counter is not None:
        check_counter_name(event.counter)
    for ref in event.view:
        check_count(ref.index, "an index")
        check_count(ref.tokens, "a count in view")
        check_count(ref.position, "a position")
        if not first <= ref.position <= last:
            raise InvalidInputError(
                f"{what} keeps a message of position {ref.position}, outside {first} to {last}"
            )
    if event.pinned and not event.view:
        raise InvalidInputError(f"{what} pins the first message of a view, but keeps none")


def _check_checkpoint_event(event: CheckpointEvent) -> None:
    """The text of a checkpoint event is storable, and it names what it says it does."""
    if isinstance(event, CheckpointSaved):
        texts = [event.ns, event.checkpoint_id, event.checkpoint.type, event.metadata.type]
        texts += [t for t in (event.parent_id, event.source, event.run_id) if t is not None]
        texts += list(event.versions)
        for value in event.values:
            texts.append(value.channel)
            if value.value is not None and value.items is not None:
                raise InvalidInputError("a channel value is a whole value or items, not both")
            if value.extends is not None and value.items is None:
                raise InvalidInputError("only a list (items) extends an earlier version")
            if value.extends is not None and value.extends == value.version:
                raise InvalidInputError("a channel version cannot extend itself")
            if event.versions.get(value.channel) != value.version:
                raise InvalidInputError(
                    f"channel {value.channel!r} has a value at a version the checkpoint "
                    "does not hold"
                )
        if len({v.channel for v in event.values}) != len(event.values):
            raise InvalidInputError("a checkpoint stores each channel's value once")
        if not event.checkpoint_id:
            raise InvalidInputError("a checkpoint id must not be empty")
    elif isinstance(event, CheckpointWritesSaved):
        texts = [event.ns, event.checkpoint_id, event.task_id, event.task_path]
        for write in event.writes:
            texts += [write.channel, write.value.type]
    else:
        texts = [text for pair in event.checkpoints for text in pair] + list(event.run_ids)
        if event.everything and event.checkpoints:
            raise InvalidInputError("a tombstone names checkpoints or the whole thread")
    for text in texts:
        check_text(text, "a checkpoint field")
        if "\x00" in text:  # PostgreSQL's text cannot hold it
            raise InvalidInputError("a checkpoint field must not contain NUL characters")


def _check_model(model: str | None) -> None:
    if model is not None:
        check_text(model, "model")
        if not model:
            raise InvalidInputError("model must not be empty")


def _check_counts(counts: tuple[int, ...], expected: int | None, what: str) -> None:
    if expected is not None and len(counts) != expected:
        raise InvalidInputError(f"{what} has {len(counts)} counts for {expected} messages")
    for count in counts:
        if type(count) is not int or not 0 <= count <= MAX_COUNT:  # the usual case, fast
            check_count(count, f"a count in {what}")


GENESIS_HASH = bytes(32)
_envelope = msgspec.json.Encoder()


def chain_hash(
    previous: bytes, session_id: str, position: int, recorded_at_us: int, data: bytes
) -> bytes:
    """The first chain (events written before schema 7, which have no content digest):
    SHA-256 over the previous event's hash, this event's envelope and its payload."""
    digest = hashlib.sha256(previous)
    digest.update(_envelope.encode((session_id, position, recorded_at_us)))
    digest.update(data)
    return digest.digest()


def content_digest(data: bytes) -> bytes:
    """SHA-256 of an event's stored JSON: what the chain covers, stored beside it, so
    the chain still verifies once the content is erased."""
    return hashlib.sha256(data).digest()


def event_hash(
    previous: bytes, session_id: str, position: int, recorded_at_us: int, content: bytes
) -> bytes:
    """The chain since schema 7: SHA-256 over the previous event's hash, this event's
    envelope (with the chain's number, 2) and its content digest (`content_digest`)."""
    digest = hashlib.sha256(previous)
    digest.update(_envelope.encode((session_id, position, recorded_at_us, 2)))
    digest.update(content)
    return digest.digest()


# The stored JSON of an event whose content was erased (its digest and hash stay).
ERASED_DATA = b'{"kind":"erased"}'


class StoredEvent(msgspec.Struct, frozen=True):
    """An event as read back from the log.

    ``position`` is 1-based and gapless within the session; ``global_position`` orders
    events across all sessions of a store. ``recorded_at`` is when it was appended, in
    UTC; ``recorded_at_us`` is the stored value itself, microseconds since the epoch. (A
    stored value beyond what a datetime can show, which only a hand-made change to the
    database can put there, reads as ``datetime.min`` or ``datetime.max``, in UTC.)
    """

    session_id: str
    position: int
    global_position: int
    recorded_at: datetime
    data: Event
    hash: str
    recorded_at_us: int = 0

    @property
    def kind(self) -> str:
        """The event's tag: ``"turn"``, ``"step"``, ``"clear"``, ``"messages"``,
        ``"retract"``, ``"summary"``, ``"fork"``, ``"rewind"``, ``"erase"`` (an
        erasure's tombstone), ``"seal"`` (retention), ``"erased"`` (an event whose
        content was erased or sealed), or a LangGraph checkpoint's ``"checkpoint"``,
        ``"writes"`` and ``"checkpoints_deleted"``."""
        return self.data.__struct_config__.tag  # type: ignore[return-value]
