"""Verilator's lint of the generated Verilog (subbit.fpga.lint; docs/decoder.md, "Lint")."""

import re

import pytest

from subbit.fpga.lint import WAIVERS, lint
from subbit.hw import axis, infer_top
from subbit.hw.params import DecoderParams
from subbit.hw.verilog import TOP, generate_params

# `subbit verilog`'s default, every K, both lookups, the ECP5 multiplier (linted against yosys's
# MULT18X18D declaration), a 32-bit bus, one symbol and 255, no prefetch, both windows and f/c reads,
# row classes
CONFIGS = {
    "K1": dict(lanes=1),
    "K1-ecp5-mul": dict(lanes=1, multiplier="ecp5"),
    "K1-table-pf0": dict(lanes=1, lookup="table", prefetch=0),
    "K1-S1": dict(lanes=1, max_symbols=1),
    "K2-M14-S255-table": dict(lanes=2, prob_bits=14, max_symbols=255, lookup="table"),
    "K4-M10-w32-shift-sync": dict(lanes=4, prob_bits=10, word_width=32, window="shift", fc_read="sync"),
    "K8-ring": dict(lanes=8, ways=8, window="ring"),
    # row classes: the comparators and the slot table, 2 and 8 tables
    "K1-T8": dict(lanes=1, tables=8),
    "K4-w32-T2-table": dict(lanes=4, word_width=32, tables=2, lookup="table", ways=7),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_decoder_lints_clean(name):
    assert lint(generate_params(DecoderParams(**CONFIGS[name])), TOP) == []


def test_axis_wrapper_lints_clean():
    assert lint(axis.generate(DecoderParams(lanes=2)), axis.TOP) == []


def test_inference_top_lints_clean():
    assert lint(infer_top.generate(DecoderParams(lanes=1)), infer_top.TOP) == []


def test_lint_reports_what_is_not_waived():
    # a truncating sum is not a pattern of Amaranth's backend: it stays a warning
    src = ("module t(input [7:0] a, input [7:0] b, output [7:0] y);\n"
           "  assign y = {1'b0, a} + {1'b0, b};\nendmodule\n")
    assert [re.match(r"%Warning-(\w+)", w).group(1) for w in lint(src, "t")] == ["WIDTHTRUNC"]


def test_every_waiver_says_why():
    lines = WAIVERS.read_text().splitlines()
    assert lines[0] == "`verilator_config"
    for i, line in enumerate(lines):
        if line.startswith("lint_off"):
            assert re.fullmatch(r'lint_off -rule [A-Z]+ -file "\*" -match "[^"]+"', line), line
            assert lines[i - 1].startswith("//") or lines[i - 1].startswith("lint_off"), line
