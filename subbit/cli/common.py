"""What the commands share: running one with subbit's exit codes, progress bars, options kept as data."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from subbit.model.errors import SubbitError

__all__ = ["Option", "progress", "run"]


def progress():
    """tqdm on a terminal, silent otherwise (keeps logs and pipes clean)."""
    from tqdm import tqdm
    return lambda it, **kw: tqdm(it, disable=not sys.stderr.isatty(), leave=False, **kw)


def run(args) -> int:
    """Run the command ``args.func(args)`` parsed by a ``subbit`` parser: its exit code, 0 for None;
    2 for a `SubbitError` (``subbit COMMAND: error: MESSAGE`` on stderr), 130 when interrupted,
    141 when the reader of stdout left."""
    try:
        return args.func(args) or 0
    except BrokenPipeError:                    # `subbit inspect --json f.sbw | head`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would raise again
        return 141
    except SubbitError as e:
        print(f"subbit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"subbit {args.command}: interrupted", file=sys.stderr)
        return 130


@dataclass(frozen=True)
class Option:
    """One option of a command as data: ``parser.add_argument(*flags, **kwargs)``, and what a
    command needs to list its options again (``subbit train`` rebuilds its command line and checks
    a resumed run's options against the stored ones)."""
    flags: tuple[str, ...]
    kwargs: dict

    def add_to(self, parser) -> None:
        parser.add_argument(*self.flags, **self.kwargs)

    @property
    def flag(self) -> str:
        """The long flag (``--prob-bits``)."""
        return max(self.flags, key=len)

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments (argparse's rule: ``dest``, else the first long flag)."""
        return self.kwargs.get("dest") or next(f for f in self.flags if f.startswith("--"))[2:].replace("-", "_")

    @property
    def switch(self) -> bool:
        """The option takes no value (``store_true``/``store_false``)."""
        return self.kwargs.get("action") in ("store_true", "store_false")

    @property
    def default(self):
        if "default" in self.kwargs:
            return self.kwargs["default"]
        return {"store_true": False, "store_false": True}.get(self.kwargs.get("action"))


def option(*flags: str, **kwargs) -> Option:
    """``Option(flags, kwargs)`` in ``add_argument``'s own form."""
    return Option(flags, kwargs)
