"""The plugin's defaults: set from ini and command line, read by every check."""

from __future__ import annotations

from dataclasses import dataclass

TRANSPORTS = ("memory", "libp2p")
#: how much a failing check prints: the short form, or everything
REPORTS = ("short", "full")
DEFAULT_TIMEOUT = 10.0
#: protocol log lines kept per peer for failure reports
LOG_LINES = 40


@dataclass
class Settings:
    timeout: float = DEFAULT_TIMEOUT
    transport: str = "memory"
    report: str = "short"


current = Settings()


def timeout(value: float | None) -> float:
    """An explicit timeout, or the configured default."""
    if value is None:
        return current.timeout
    if value <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {value!r}")
    return float(value)


def parse_timeout(raw: object, where: str) -> float:
    """Validate a timeout given as text; the error names where it came from."""
    try:
        value = float(str(raw))
    except ValueError:
        raise ValueError(f"{where} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{where} must be > 0 seconds, got {raw!r}")
    return value


def parse_transport(raw: object, where: str) -> str:
    value = str(raw).strip().lower()
    if value not in TRANSPORTS:
        raise ValueError(f"{where} must be one of {', '.join(TRANSPORTS)}, got {raw!r}")
    return value


def parse_report(raw: object, where: str) -> str:
    value = str(raw).strip().lower()
    if value not in REPORTS:
        raise ValueError(f"{where} must be one of {', '.join(REPORTS)}, got {raw!r}")
    return value
