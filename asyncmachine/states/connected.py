"""A connection's life: connecting, connected, disconnecting, disconnected.

The four states remove each other, so exactly one is active at a time.
Needs ``Start`` and ``Exception`` (merge with ``BASIC``).
"""

from .._schema import EXCEPTION, State

CONNECTED_GROUP = ("Connecting", "Connected", "Disconnecting", "Disconnected")

CONNECTED: dict[str, State] = {
    "ErrConnecting": State(require=[EXCEPTION]),
    "Connecting": State(require=["Start"], remove=CONNECTED_GROUP),
    "Connected": State(require=["Start"], remove=CONNECTED_GROUP),
    "Disconnecting": State(remove=CONNECTED_GROUP),
    "Disconnected": State(auto=True, remove=CONNECTED_GROUP),
}
