"""Basic states most machines share: start, ready, errors, health."""

from .._schema import EXCEPTION, State

BASIC: dict[str, State] = {
    EXCEPTION: State(multi=True),
    "ErrNetwork": State(multi=True, add=[EXCEPTION], require=[EXCEPTION]),
    "ErrHandlerTimeout": State(multi=True, add=[EXCEPTION], require=[EXCEPTION]),
    "Start": State(),
    "Ready": State(require=["Start"]),
    "Healthcheck": State(multi=True),
    "Heartbeat": State(),
}
