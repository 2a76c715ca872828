"""Fixtures shared by the process-level fault tests."""

from .procutil import watcher

__all__ = ["watcher"]
