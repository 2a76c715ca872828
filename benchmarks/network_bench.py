#!/usr/bin/env python
"""Network benchmark: ampubsub over py-libp2p on 127.0.0.1, next to raw gossipsub.

For each size in ``--peers`` (one OS process per size, so memory and CPU
figures don't leak from one size into the next) it measures, side by side in
the same run:

* start-up: every peer is a ``Topic`` on a ``Libp2pTransport`` exporting
  ``--machines`` machines and bootstrapping from up to 4 earlier peers (peer 0
  plus 3 random earlier ones; never a star). Peers start concurrently, each as
  soon as its bootstrap peers listen. Reported: first start -> last ``Joined``,
  last ``Joined`` -> full discovery (every peer lists every other peer's
  machines, from the ``ampubsub_machine_discovered`` hook), and first start ->
  discovered *and* synced (every remote clock equals its owner's);
* idle traffic: ``out_*`` counters of all topics (messages the protocol
  handed to the transport) per peer per second over ``--idle`` s with no
  change, and the process CPU used meanwhile;
* memory: RSS (``/proc/self/status`` VmRSS) after the ampubsub network is
  synced minus RSS before it, per peer; the same for the raw network;
* clock-update latency: an owner toggles one state of one machine; for every
  other peer, ``time.monotonic()`` from just before the transition to the
  ``ampubsub_machine_updated`` hook showing the new clock there. p50/p99 over
  all (update, receiver) pairs;
* raw gossipsub latency, the transport's floor: a second set of bare
  ``Libp2pTransport`` s with the same topology on another topic; a random peer
  publishes a payload of the size of an ampubsub ``updates`` message through
  ``Libp2pTransport.publish`` and every other peer timestamps it in
  ``on_message``. Raw and ampubsub events alternate, paced at ``--rate`` events
  per second in total; an event starts only after the previous one reached
  everybody (or timed out), so neither sees the other's backlog. The ratio
  ours/raw is printed next to both.

Then ``--procs-peers`` peers split over ``--procs`` OS processes (peer i lives
in process i % procs, so most links cross processes), coordinated by this
process over pipes (JSON lines). Latency there uses ``time.time()`` (one clock
for all processes): the owner's process records when it changed a machine to
a known time sum, every receiving process when its view reached that sum.

Every wait is bounded; a timeout prints the phase that timed out.

Usage:
  python benchmarks/network_bench.py                    # full default run
  python benchmarks/network_bench.py --quick            # smoke run (~1 min)
  python benchmarks/network_bench.py --peers 10 --no-multiproc --profile
  python benchmarks/network_bench.py --json-out /tmp/r.json --format markdown
  python benchmarks/network_bench.py --render /tmp/r.json --format markdown

``--profile`` runs cProfile over the latency phase of each single-process
size, separately for ampubsub events and raw events, and prints the top
functions and the CPU split by package (ampubsub / asyncmachine / libp2p /
trio / other).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # run from a checkout without install
sys.path.insert(0, str(HERE.parent))  # the netbench package next to this file

from netbench.cli import main  # noqa: E402  (after the path tweak)

if __name__ == "__main__":
    sys.exit(main())
