"""``python -m subbit.cli.cache [--clean]``: print subbit's per-user cache directory, or remove
subbit's subdirectories of it (`subbit.model.paths`; ``make clean-cache``)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    from subbit.model.errors import SubbitError
    from subbit.model.paths import cache_root, clean_cache
    ap = argparse.ArgumentParser(prog="python -m subbit.cli.cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", action="store_true", help="remove subbit's subdirectories of the cache directory "
                    "(only those: $SUBBIT_BUILD_DIR may name a directory that holds more); not while subbit runs")
    a = ap.parse_args(argv)
    try:
        root = cache_root()
        if a.clean:
            for d in clean_cache(root):
                print(f"removed {d}")
        else:
            print(root)
    except (SubbitError, OSError) as e:
        print(f"subbit: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
