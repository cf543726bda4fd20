"""Registration of the sub-commands that belong to subsystems (benchmarks, hardware, training)."""

from __future__ import annotations


def register(sub):
    from subbit import bench, demo
    bench.register(sub)
    demo.register(sub)
