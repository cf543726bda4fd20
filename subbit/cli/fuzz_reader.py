"""``python -m subbit.cli.fuzz_reader``: fuzz the weight-stream reader (`subbit.model.fuzz`) with
atheris, or on seeded random inputs (docs/reliability.md)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    from subbit.model import fuzz
    ap = argparse.ArgumentParser(prog="python -m subbit.cli.fuzz_reader", description=fuzz.__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="run time (default 60)")
    ap.add_argument("--engine", choices=["atheris", "random"], default=None,
                    help="default: atheris if it imports, else random")
    ap.add_argument("--corpus", default=None, help="atheris corpus directory (created, seeded; default "
                    "fuzz-corpus in the cache directory of subbit.model.paths)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    return fuzz.run(a.seconds, a.engine, a.corpus, a.seed)


if __name__ == "__main__":
    sys.exit(main())
