"""Registration of the sub-commands that belong to subsystems (benchmarks, hardware, training)."""

from __future__ import annotations


def register(sub):
    from subbit import bench, demo
    from subbit.fpga import cli as fpga_cli
    from subbit.hw import cli as hw_cli
    bench.register(sub)
    demo.register(sub)
    fpga_cli.register(sub)
    hw_cli.register(sub)
    from subbit import train
    train.register(sub)
    from subbit import infer
    infer.register(sub)
