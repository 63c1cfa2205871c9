"""One-run benchmark of the gateway against its peers (issue 13): ``make bench-peers``, ``python -m bench.peers``."""
