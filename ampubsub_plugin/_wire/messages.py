"""The protocol's messages and limits, as typed values.

Rules:

1. One frozen dataclass per message ``Type`` of asyncmachine-go's
   pkg/pubsub (its ``TYPE`` is the wire name), fields named for the domain;
   the Go field names live in the reader and the writer only.
2. The limits below bound every payload we produce or accept; the reader
   enforces them on untrusted input, the writer on our own messages.
3. A machine's time vector only grows, so its sum (:func:`time_sum`) is the
   checksum peers gossip; a schema travels once and is then named by
   :func:`schema_hash`, a digest of its states in order.
4. Only the owner moves its clock. An owner signs each clock it sends:
   :func:`clock_proof_payload` names the peer, the machine index, the owner's
   *incarnation* (a number that grows with every start of the peer) and the
   vector, plus a digest of the machine's identity (:func:`identity_digest`);
   relays forward the signature unchanged. Incarnations and signatures ride
   in keys Go skips (``Inc``, ``Sig``, ``Proofs``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias

import msgpack  # type: ignore[import-untyped]

from asyncmachine import State

from .errors import schema_mismatch

PROTOCOL_VERSION: Final = 1
#: Largest payload we produce or accept, in bytes (gossipsub allows ~1 MiB).
MAX_PAYLOAD: Final = 1_000_000
MAX_PEERS_PER_MSG: Final = 1024
MAX_MACHINES_PER_PEER: Final = 1024
MAX_STATES: Final = 4096
#: Largest tick, time sum and machine index (Go sends uint64, we keep int64).
MAX_TICK: Final = 2**63 - 1
#: Longest peer id, machine id, state name, tag or hash, in characters.
MAX_ID_LEN: Final = 256
MAX_TAGS: Final = 256
#: Longest signature we accept (ed25519 signatures are 64 bytes).
MAX_SIG_LEN: Final = 128

_HASH_PERSON: Final = b"ampubsub-schema"


@dataclass(frozen=True, slots=True)
class Info:
    """One exported machine, as introduced in an ``info`` message.

    ``schema`` and ``states`` are None when not sent (Go's test-schema mode,
    or a schema shipped earlier and referred to by ``schema_hash``).
    """

    id: str
    schema: dict[str, State] | None
    states: list[str] | None
    time: list[int]
    tags: list[str]
    parent: str
    schema_hash: str | None = None
    #: the owner's incarnation (0: not sent, as from Go peers)
    incarnation: int = 0
    #: the owner's signature over this clock (see :func:`clock_proof_payload`)
    signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class InfoMsg:
    """Introduces machines: peer -> machine index -> Info, plus gossip sums."""

    TYPE: ClassVar[str] = "info"
    peer_info: dict[str, dict[int, Info]]
    peer_gossips: dict[str, dict[int, int]]
    #: a hello whose sender fetches its snapshot directly from a neighbour:
    #: nobody broadcasts one for it
    pull: bool = False
    #: a hello said again: its sender doesn't know it was heard, and waits
    #: for an acknowledgement (a first hello needs none: the newcomer's
    #: snapshot shows whether it was heard)
    again: bool = False
    #: the sender's clock when it sent this, in ms (0: not said; Go peers
    #: don't): receivers measure how far behind they run (back-pressure)
    sent_at: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Proof:
    """An owner's incarnation and its signatures of some clocks, by index."""

    incarnation: int
    signatures: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class UpdatesMsg:
    """New machine times: peer -> machine index -> full time vector.

    ``proofs``: peer -> its incarnation and signatures of those vectors.
    """

    TYPE: ClassVar[str] = "updates"
    peer_clocks: dict[str, dict[int, list[int]]]
    proofs: dict[str, Proof] = field(default_factory=dict)
    #: the sender's clock when it sent this, in ms (0: not said; Go peers
    #: don't): receivers measure how far behind they run (back-pressure)
    sent_at: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class GossipMsg:
    """Checksums: peer -> machine index -> time sum seen by the sender."""

    TYPE: ClassVar[str] = "gossip"
    peer_gossips: dict[str, dict[int, int]]
    #: the sender's incarnation (a restart shows in its gossip, too)
    incarnation: int = 0
    #: the sender's clock when it sent this, in ms (0: not said; Go peers
    #: don't): receivers measure how far behind they run (back-pressure)
    sent_at: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ReqInfoMsg:
    """Asks for (re)introductions of these peers."""

    TYPE: ClassVar[str] = "reqinfo"
    peer_ids: list[str]
    #: the sender's clock when it sent this, in ms (0: not said; Go peers
    #: don't): receivers measure how far behind they run (back-pressure)
    sent_at: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ReqUpdatesMsg:
    """Asks for the current clocks of these peers' machines.

    ``probe``: the sender lost its connection to these peers and asks whether
    they are alive; receivers show them disconnected unless they answer.
    """

    TYPE: ClassVar[str] = "requpdates"
    peer_ids: list[str]
    probe: bool = False
    #: the sender's clock when it sent this, in ms (0: not said; Go peers
    #: don't): receivers measure how far behind they run (back-pressure)
    sent_at: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ByeMach:
    """One departing machine (``peer_bye``: the whole peer leaves)."""

    peer_bye: bool
    id: str
    time: list[int]


@dataclass(frozen=True, slots=True)
class ByeMsg:
    """These machines of the sender (or the sender itself) leave."""

    TYPE: ClassVar[str] = "bye"
    machs: dict[int, ByeMach]
    #: the sender's incarnation (a bye of an older one is stale)
    incarnation: int = 0
    #: the sender's clock when it sent this, in ms (0: not said; Go peers
    #: don't): receivers measure how far behind they run (back-pressure)
    sent_at: int = field(default=0, compare=False)


Message: TypeAlias = (
    InfoMsg | UpdatesMsg | GossipMsg | ReqInfoMsg | ReqUpdatesMsg | ByeMsg
)


def time_sum(time: list[int]) -> int:
    """Sum of a time vector; for one machine it only grows."""
    return sum(time)


def schema_hash(schema: dict[str, State], states: list[str]) -> str:
    """Stable 16-hex-digit digest of ``schema`` in ``states`` order.

    Raises ProtocolError("schema") when the schema's keys are not the states.
    """
    if len(schema) != len(states) or schema.keys() != set(states):
        schema_mismatch(schema, states, "schema")
    rows = []
    for name in states:
        st = schema[name]
        rows.append(
            [
                name,
                st.auto,
                st.multi,
                list(st.require),
                list(st.add),
                list(st.remove),
                list(st.after),
                list(st.tags),
            ]
        )
    blob: bytes = msgpack.packb(rows, use_bin_type=True)
    return hashlib.blake2b(blob, digest_size=8, person=_HASH_PERSON).hexdigest()


_IDENTITY_PERSON: Final = b"ampubsub-ident"
_PROOF_TAG: Final = b"ampubsub-clock-v1"


def identity_digest(
    id: str, states: list[str], tags: list[str], parent: str, schema_hash: str | None
) -> bytes:
    """16 bytes naming what a machine is; a clock's signature covers it."""
    blob: bytes = msgpack.packb(
        [id, list(states), list(tags), parent, schema_hash or ""], use_bin_type=True
    )
    return hashlib.blake2b(blob, digest_size=16, person=_IDENTITY_PERSON).digest()


def info_identity(info: Info) -> bytes:
    """The identity digest of the machine an ``Info`` introduces."""
    return identity_digest(
        info.id, info.states or [], info.tags, info.parent, info.schema_hash
    )


def clock_proof_payload(
    peer: str, index: int, incarnation: int, time: list[int], identity: bytes
) -> bytes:
    """The bytes an owner signs for one clock of one machine."""
    payload: bytes = msgpack.packb(
        [_PROOF_TAG, peer, index, incarnation, list(time), identity],
        use_bin_type=True,
    )
    return payload
