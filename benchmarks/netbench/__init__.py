"""The network benchmark as a package; ``benchmarks/network_bench.py`` runs it."""
