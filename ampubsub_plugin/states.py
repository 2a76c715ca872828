"""The topic's schema: asyncmachine-go's pkg/pubsub topic states.

Built from the shared BASIC, CONNECTED and DISPOSED schemas plus the topic's
own states, merged last (a topic state replaces a shared one of its name).
Every work state requires ``Joined``, which requires ``Connected``, which
requires ``Start``: removing ``Start`` (or adding ``Disposing``) tears the
whole topic down, and each state's context cancels the work it forked.
"""

from __future__ import annotations

from asyncmachine import EXCEPTION, State, merge_schemas
from asyncmachine.states import BASIC, CONNECTED, DISPOSED

_J = ["Joined"]

TOPIC_STATES: dict[str, State] = {
    # errors
    "ErrJoining": State(require=[EXCEPTION]),
    "ErrListening": State(require=[EXCEPTION]),
    # lifecycle
    "Started": State(require=["Start"]),
    "Joining": State(require=["Connected"], remove=["Joined"]),
    "Joined": State(require=["Connected"], remove=["Joining"]),
    "Ready": State(auto=True, require=_J),
    "Heartbeat": State(require=_J),
    # what the protocol noticed missing (informational, multi)
    "MissPeersByUpdates": State(multi=True, require=_J),
    "MissPeersByGossip": State(multi=True, require=_J),
    "MissUpdatesByGossip": State(multi=True, require=_J),
    # outbound intents (active while such a message waits to be sent)
    "SendGossips": State(require=_J),
    "SendUpdates": State(require=_J),
    "ReqMissingPeers": State(require=_J),
    "ReqMissingUpdates": State(require=_J),
    "DoSendInfo": State(require=_J),
    "SendInfo": State(require=_J),
    # events
    "PeerJoined": State(multi=True, require=_J),
    "PeerLeft": State(multi=True, require=_J),
    "MsgInfo": State(multi=True, require=_J),
    "MsgBye": State(multi=True, require=_J),
    "MsgUpdates": State(multi=True, require=_J),
    "MsgGossip": State(multi=True, require=_J),
    "MsgReqInfo": State(multi=True, require=_J),
    "MsgReqUpdates": State(multi=True, require=_J),
    "MsgReceived": State(multi=True, require=_J),
    "ListMachines": State(multi=True, require=_J),
    "SendMsg": State(multi=True, require=_J),
    # ours: the send loop's turn to take what the core has due (see topic.py)
    "Flush": State(multi=True, require=_J),
    # ours: a newcomer asked us directly for our snapshot (see _pull.py)
    "ServePull": State(multi=True, require=_J),
    # ours: our snapshot pull from a neighbour failed, or succeeded (its
    # messages were received first; see _pull.py)
    "PullFailed": State(multi=True, require=_J),
    "Pulled": State(multi=True, require=_J),
    "ProcessMsgs": State(multi=True, require=_J),
}

TOPIC_SCHEMA: dict[str, State] = merge_schemas(BASIC, CONNECTED, DISPOSED, TOPIC_STATES)

#: inbound message type -> the state it activates
MSG_STATES = {
    "info": "MsgInfo",
    "updates": "MsgUpdates",
    "gossip": "MsgGossip",
    "reqinfo": "MsgReqInfo",
    "requpdates": "MsgReqUpdates",
    "bye": "MsgBye",
}
