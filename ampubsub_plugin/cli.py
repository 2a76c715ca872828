"""The ``ampubsub`` command: ``demo``, ``peer`` and ``watch``.

The entry point of the console script; the command lives in the private
package :mod:`ampubsub_plugin._cli`. Only the command prints (the library
logs). Exit codes: 0 ok, 1 unexpected error, 2 bad argument, 3 network
failure, 4 nobody on the topic (``watch``), 130 interrupted.
"""

from __future__ import annotations

import sys

from ._cli.main import main, parser
from ._cli.output import Exit

__all__ = ["Exit", "main", "parser"]

if __name__ == "__main__":
    sys.exit(main())
