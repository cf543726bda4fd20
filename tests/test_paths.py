"""The per-user cache directory (subbit.model.paths): where it is, that every working directory
shares it and none is written to, and that its builds are safe when processes run at once."""

import os
import subprocess
import sys
import threading

import pytest

from subbit.model import paths
from subbit.model.errors import SubbitError
from subbit.sim import runner


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No cache variable set, $HOME a fresh directory (YoWASP keeps its compiled tools where they
    are: they take a minute to compile)."""
    import platformdirs
    monkeypatch.setenv("YOWASP_CACHE_DIR", os.environ.get("YOWASP_CACHE_DIR")
                       or platformdirs.user_cache_dir("YoWASP", appauthor=False))
    monkeypatch.delenv("SUBBIT_BUILD_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_cache_root_resolution(env, tmp_path):
    assert paths.cache_root() == str(tmp_path / "home" / ".cache" / "subbit")
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == str(tmp_path / "xdg" / "subbit")
    env.setenv("XDG_CACHE_HOME", "relative/xdg")                 # ignored, as the XDG spec says
    assert paths.cache_root() == str(tmp_path / "home" / ".cache" / "subbit")
    env.setenv("SUBBIT_BUILD_DIR", str(tmp_path / "mine"))       # overrides both
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == str(tmp_path / "mine")
    assert runner.build_dir_root() == str(tmp_path / "mine")
    assert paths.cache_dir("synth", "x") == str(tmp_path / "mine" / "synth" / "x")
    env.chdir(tmp_path)
    env.setenv("SUBBIT_BUILD_DIR", "rel")                        # relative: from the current directory
    assert paths.cache_root() == str(tmp_path / "rel")
    env.setenv("SUBBIT_BUILD_DIR", "")                           # empty: unset
    assert paths.cache_root() == str(tmp_path / "xdg" / "subbit")


def test_no_home_is_a_clean_error(env):
    env.setattr(paths.os.path, "expanduser", lambda p: p)
    with pytest.raises(SubbitError, match=r"\$HOME is not set; set SUBBIT_BUILD_DIR"):
        paths.cache_root()


def test_every_working_directory_shares_one_cache(env, tmp_path):
    roots = []
    for cwd in ("a", "b/c"):
        (tmp_path / cwd).mkdir(parents=True)
        env.chdir(tmp_path / cwd)
        roots.append((paths.cache_root(), runner.build_dir_root()))
    assert roots[0] == roots[1] == (str(tmp_path / "home" / ".cache" / "subbit"),) * 2


def test_synth_writes_nothing_in_the_working_directory(env, tmp_path, capsys):
    """The cheapest command that caches something (the Verilog and wrappers of `synth
    --verilog-only`, one yosys run) leaves the current directory empty and fills the cache."""
    from subbit.cli import main
    work, xdg = tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    env.chdir(work)
    env.setenv("XDG_CACHE_HOME", str(xdg))
    assert main(["synth", "--target", "generic", "--verilog-only"]) == 0
    build = xdg / "subbit" / "synth" / "generic-K1-M12-compare-w16"
    assert capsys.readouterr().out.splitlines()[0] == str(build / "design.v")
    assert (build / "design.v").stat().st_size > 0
    assert os.listdir(work) == []


def test_cache_dir_in_the_way_is_a_clean_error(env, tmp_path):
    (tmp_path / "f").write_text("")
    env.setenv("SUBBIT_BUILD_DIR", str(tmp_path / "f"))
    with pytest.raises(SubbitError, match=f"cannot create the cache directory {tmp_path / 'f'}/sim/x: "
                       "Not a directory .set SUBBIT_BUILD_DIR to another directory."):
        runner.cached_build(paths.cache_dir("sim", "x"), "d", lambda: None)


CONCURRENT = """
import os, sys, time
from subbit.sim import runner
d = sys.argv[1]
def make():
    with open(os.path.join(os.path.dirname(d), "makes"), "a") as fh:
        fh.write("make\\n")
    time.sleep(0.5)                  # a slow build: the other process arrives meanwhile
    with open(os.path.join(d, "model"), "w") as fh:
        fh.write("whole")
runner.cached_build(d, "digest", make)
with open(os.path.join(d, "model")) as fh:
    print(fh.read())
"""


def test_concurrent_builds_of_one_model_build_it_once(tmp_path):
    d = str(tmp_path / "entry")
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, d], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == ["whole", "whole"]        # neither saw a partial build
    assert (tmp_path / "makes").read_text() == "make\n"
    assert (tmp_path / "entry" / "built.ok").read_text() == "digest"


def test_a_failed_build_is_never_used_and_is_redone_from_scratch(tmp_path):
    d = str(tmp_path / "entry")

    def broken():
        (tmp_path / "entry" / "half").write_text("partial")
        raise runner.SimError("compiler crashed")
    with pytest.raises(runner.SimError, match="compiler crashed"):
        runner.cached_build(d, "digest", broken)
    assert sorted(os.listdir(d)) == [".lock", "half"]                # kept for its log, not marked built
    seen = []
    runner.cached_build(d, "digest", lambda: seen.append(sorted(os.listdir(d))))
    assert seen == [[".lock"]]                                       # emptied before building again
    assert os.path.exists(os.path.join(d, "built.ok"))


def test_lock_survives_its_directory_being_evicted(tmp_path):
    """A process waiting for an entry that another evicts (removes, lock and all) locks the
    directory afresh instead of building into the removed one."""
    d = str(tmp_path / "entry")
    os.makedirs(d)
    held = paths.try_lock(d)
    assert held is not None and paths.try_lock(d) is None
    waiting, inside = threading.Event(), []

    def waiter():
        with paths.locked(d, waiting=lambda msg: waiting.set()):
            inside.append(os.path.exists(os.path.join(d, paths.LOCK)))
    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(30)
    import shutil
    shutil.rmtree(d)                 # what runner._evict does, holding the lock
    held.close()
    t.join(30)
    assert inside == [True]


def test_clean_cache_removes_only_subbits_directories(tmp_path):
    root = tmp_path / "shared"
    for sub in ("sim/verilator/m", "synth/ecp5-K1", "other"):
        (root / sub).mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    assert paths.clean_cache(str(root)) == [str(root / "sim"), str(root / "synth")]
    assert sorted(os.listdir(root)) == ["notes.txt", "other"]
    (root / "notes.txt").unlink()
    (root / "other").rmdir()
    (root / "bench-rtl").mkdir()
    assert paths.clean_cache(str(root)) == [str(root / "bench-rtl"), str(root)]
    assert not root.exists()
