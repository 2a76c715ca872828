"""The ``ampubsub`` command, one module per job (private; the entry point is
:func:`ampubsub_plugin.cli.main`).

- ``output``: exit codes, the one-line errors, the console, logging set-up;
- ``network``: transports, starting a topic within ``--timeout``, addresses;
- ``demo``: ``ampubsub demo``, a local network converging;
- ``peer``: ``ampubsub peer``, one long-lived peer and its workloads;
- ``watch``: ``ampubsub watch``, the network debugger;
- ``main``: the argument parser and the dispatch.
"""
