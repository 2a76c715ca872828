"""Shared schemas, ported from asyncmachine-go's pkg/states.

Merge them into your own schema with :func:`asyncmachine.merge_schemas`:
``CONNECTED`` relies on ``Start`` and ``Exception`` from ``BASIC``.
"""

from .basic import BASIC
from .connected import CONNECTED, CONNECTED_GROUP
from .disposed import DISPOSED

__all__ = ["BASIC", "CONNECTED", "CONNECTED_GROUP", "DISPOSED"]
