"""rebootd's benchmarks: `nox -s bench` (`python -m bench.run`) measures footprint, start-up, API
load, hand-off cost and rollout overhead against their targets (each `Figure`'s limit in
`bench.sections`; bench/README.md).

Rule: pure arithmetic and judging live in `bench.stats` (unit-tested); every other module
measures one thing against real processes or the in-process simulator and returns plain data.
"""
