"""Where subbit keeps what it can rebuild: compiled simulation models, synthesis runs, the fuzz corpus.

One directory per user, shared by every working directory and checkout (:func:`cache_root`):
``$SUBBIT_BUILD_DIR`` when set, else ``$XDG_CACHE_HOME/subbit``, else ``~/.cache/subbit``.
Running subbit from another folder neither recompiles nor writes there. Its subdirectories:

``sim/``
    Compiled simulation models (``subbit.sim.runner``), one per generated Verilog and toolchain,
    each built once under a lock (:func:`locked`), least recently used ones evicted.
``synth/<target>-<config>/``
    ``subbit synth``'s working directory: design, scripts, reports and logs (``--build-dir``
    chooses another).
``bench-rtl/``
    ``subbit bench rtl``'s runs (a directory per configuration) and ``sweep.json``.
``fuzz-corpus/``
    The atheris corpus of ``python -m subbit.cli.fuzz_reader``.
``peers/``
    Environments of the codecs subbit is compared with (``subbit.peers``), built once.
``formal/``
    SymbiYosys runs of the decoder's formal properties (``subbit.fpga.sby``): a directory per
    check (design, ``.sby`` file, logs, traces), and the solver's shim.

Everything there can be deleted at any time no run is going (``make clean-cache``). Results a
user asked for are not cached: ``subbit train --out``, ``subbit bench train --out-root``
(default ``./build/bench-train``) and ``-o`` files go where they are told.

``python -m subbit.cli.cache`` prints the directory; ``--clean`` removes subbit's
subdirectories of it (only those: ``$SUBBIT_BUILD_DIR`` may name a directory that holds more).

Never imports amaranth (like the rest of `subbit.model`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil

from .errors import SubbitError

__all__ = ["ENV", "SUBDIRS", "cache_root", "cache_dir", "make_dir", "locked", "try_lock", "clean_cache"]

ENV = "SUBBIT_BUILD_DIR"
#: subbit's own subdirectories of the cache root (what :func:`clean_cache` removes).
SUBDIRS = ("sim", "synth", "bench-rtl", "bench-ptq", "fuzz-corpus", "peers", "formal")
LOCK = ".lock"


def cache_root() -> str:
    """The cache directory (absolute; not created): ``$SUBBIT_BUILD_DIR`` if set and not empty
    (a relative value is taken from the current directory, ``~`` expanded), else
    ``$XDG_CACHE_HOME/subbit`` if that is an absolute path (the XDG rule: relative values are
    ignored), else ``~/.cache/subbit``.

    Raises
    ------
    SubbitError
        None of those applies (no ``$HOME``): the message names the variables to set.
    """
    d = os.environ.get(ENV)
    if d:
        return os.path.abspath(os.path.expanduser(d))
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(os.path.normpath(xdg), "subbit")
    home = os.path.expanduser("~")
    if not os.path.isabs(home):
        raise SubbitError(f"no cache directory: $HOME is not set; set {ENV} (or XDG_CACHE_HOME) to a directory")
    return os.path.join(home, ".cache", "subbit")


def cache_dir(*parts: str) -> str:
    """``parts`` under :func:`cache_root` (not created), e.g. ``cache_dir("synth", "ecp5-K1")``."""
    return os.path.join(cache_root(), *parts)


def make_dir(path: str, what: str = "cache directory") -> str:
    """Create ``path`` (and its parents) if needed and return it; SubbitError naming it (and
    ``what`` it is) when that fails: a file in the way, no permission, a read-only disk."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        hint = f" (set {ENV} to another directory)" if what == "cache directory" else ""
        raise SubbitError(f"cannot create the {what} {path}: {e.strerror or e}{hint}") from None
    return path


def _open_lock(path: str, what: str):
    make_dir(path, what)
    lock = os.path.join(path, LOCK)
    try:
        return open(lock, "a")
    except FileNotFoundError:
        return None                          # the directory went between makedirs and open: retry
    except OSError as e:
        raise SubbitError(f"cannot lock the {what} {path}: cannot open {lock}: {e.strerror or e}") from None


def _still_there(fh, path: str) -> bool:
    """Whether the lock file ``fh`` is still ``path``'s (not removed with its directory, by
    eviction or a clean, while this process waited for it)."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(os.path.join(path, LOCK)))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def locked(path: str, *, what: str = "cache directory", waiting=None):
    """Hold an exclusive lock on directory ``path`` (created if needed) for the ``with`` block.

    The lock is ``fcntl.flock`` on ``path/.lock``, shared by every process of every user of the
    directory and released when the holder exits, however it exits. ``waiting(message)`` is
    called once if another process holds it (this one then waits). If the directory is removed
    while this process waits (an evicted cache entry), it is created again and locked afresh,
    so the block never runs in a directory about to vanish.

    Raises
    ------
    SubbitError
        ``path`` cannot be created or its lock file opened (the message names them).
    """
    told = False
    while True:
        fh = _open_lock(path, what)
        if fh is None:
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None and not told:
                    waiting(f"waiting for another process using {path}")
                    told = True
                fcntl.flock(fh, fcntl.LOCK_EX)
            if _still_there(fh, path):
                yield
                return


def try_lock(path: str):
    """The open lock file of directory ``path``, locked, if no other process holds it and
    ``path`` exists; else None. Closing the file releases the lock."""
    try:
        fh = open(os.path.join(path, LOCK), "a")
    except OSError:
        return None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    if not _still_there(fh, path):
        fh.close()
        return None
    return fh


def clean_cache(root: str | None = None) -> list[str]:
    """Remove subbit's subdirectories (:data:`SUBDIRS`) of ``root`` (default :func:`cache_root`),
    then ``root`` itself if that leaves it empty; returns what was removed. Nothing else under
    ``root`` is touched. Not to be run while a subbit process is using the cache."""
    root = root or cache_root()
    gone = []
    for name in SUBDIRS:
        d = os.path.join(root, name)
        if os.path.isdir(d) and not os.path.islink(d):
            shutil.rmtree(d)
            gone.append(d)
    with contextlib.suppress(OSError):
        os.rmdir(root)
        gone.append(root)
    return gone
