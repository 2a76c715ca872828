"""Graceful disposal: Disposing runs clean-up, Disposed marks the end."""

from .._schema import EXCEPTION, State

DISPOSED: dict[str, State] = {
    "RegisterDisposal": State(multi=True),
    "Disposing": State(remove=["Start", EXCEPTION]),
    "Disposed": State(remove=["Start", EXCEPTION, "Disposing"]),
}
