"""Formal checks of the decoder (hw/formal.py, fpga/sby.py): SymbiYosys with the boolector wheel.

The quick ones (k-induction of the parser, a short BMC of the whole decoder, the mutations, the
netlist cone) run in `make test`; the deep BMC, the covers and the AXI wrapper are `slow`
(docs/results.md, section formal, has their depths and times)."""

from __future__ import annotations

import inspect

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from subbit.fpga import sby
from subbit.hw.formal import DecoderProperties, ParserProperties, progress_bound
from subbit.hw.params import DecoderParams, ErrorCode, recommended_ways
from subbit.model.errors import SubbitError

K1 = DecoderParams(lanes=1, prob_bits=8, max_symbols=3, prefetch=0)
K2 = DecoderParams(lanes=2, prob_bits=10, max_symbols=7, ways=recommended_ways(2), prefetch=16)
DECODER_PROPS = ("stream", "errors", "reset", "progress")


@pytest.mark.parametrize("params", [K1, K2], ids=["K1-M8-S3", "K2-M10-S7"])
def test_parser_error_codes_and_latency_are_proven_by_induction(params):
    r = sby.check(params, "prove", 6, "parser", name=f"test-parser-prove-K{params.lanes}")
    assert r.status == "PASS", r


@pytest.mark.parametrize("params", [K1, K2], ids=["K1-M8-S3", "K2-M10-S7"])
def test_reset_is_proven_by_induction(params):
    r = sby.check(params, "prove", 2, "decoder", ("reset",), name=f"test-reset-prove-K{params.lanes}")
    assert r.status == "PASS", r


def test_decoder_properties_hold_for_20_clocks():
    r = sby.check(K1, "bmc", 20, "decoder", DECODER_PROPS, name="test-decoder-bmc")
    assert r.status == "PASS", r


def test_a_valid_dropped_before_ready_is_caught():
    r = sby.check(K1, "bmc", 24, "decoder", ("stream",), mutation="drop_valid", name="test-mutant-drop-valid")
    assert r.status == "FAIL", r
    with open(inspect.getsourcefile(DecoderProperties)) as f:
        src = f.read().splitlines()
    assert all("o.valid dropped before ready" in src[line - 1] for line in r.failed), r.failed


def test_a_late_error_is_caught():
    r = sby.check(K1, "prove", 6, "parser", mutation="late_error", name="test-mutant-late-error")
    assert r.status == "FAIL" and r.failed, r


class _ValidFromReady(wiring.Component):
    def __init__(self):
        super().__init__({"o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.valid.eq(~self.o.ready)
        return m


@pytest.mark.parametrize("params", [K1, K2], ids=["K1-M8-S3", "K2-M10-S7"])
def test_o_valid_has_no_path_from_o_ready(params):
    assert sby.valid_cone_check(params, name=f"test-cone-K{params.lanes}")


def test_the_cone_check_sees_a_path():
    assert not sby.valid_cone_check(None, name="test-cone-bad", design=_ValidFromReady())


@pytest.mark.slow
@pytest.mark.parametrize("params,depth", [(K1, 40), (K2, 40)], ids=["K1-M8-S3", "K2-M10-S7"])
def test_decoder_properties_hold_past_a_layer_switch(params, depth):
    r = sby.check(params, "bmc", depth, "decoder", DECODER_PROPS, name=f"test-decoder-bmc-deep-K{params.lanes}")
    assert r.status == "PASS", r


@pytest.mark.slow
@pytest.mark.parametrize("params", [K1, K2], ids=["K1-M8-S3", "K2-M10-S7"])
def test_every_error_code_and_a_layer_switch_are_reachable(params):
    r = sby.check(params, "cover", 45, "decoder", ("stream", "progress"), name=f"test-decoder-cover-K{params.lanes}")
    got = sby._covers(r)
    # BAD_CLASS needs row classes (tables > 1), which these one-table decoders report as BAD_VERSION
    assert set(got["codes"]) == {c.name for c in ErrorCode
                                 if c != ErrorCode.NONE and (c != ErrorCode.BAD_CLASS or params.classed)}, got
    assert got["switch"] is not None and got["two_layers"] is not None and not got["missed"], got
    assert 0 < got["stall"] < progress_bound(params, 2), got


@pytest.mark.slow
def test_axis_wrapper_holds_its_beat():
    """The stream rule on m_axis, tuser included: a new stream's first word waits while the previous
    stream's last beat is held (before that fix, BMC found tuser restarting under the held beat)."""
    r = sby.check(K1, "bmc", 40, "axis", name="test-axis-bmc")
    assert r.status == "PASS", r


def test_harness_parameters_are_checked():
    with pytest.raises(SubbitError, match=r"properties must be a non-empty subset of .*, not \('nope',\)"):
        DecoderProperties(K1, ("nope",))
    with pytest.raises(SubbitError, match="patience must be an integer >= 1, not 0"):
        DecoderProperties(K1, patience=0)
    with pytest.raises(SubbitError, match="mutation must be None or one of .*, not 'x'"):
        DecoderProperties(K1, mutation="x")
    with pytest.raises(SubbitError, match="word_width=32, lookup='compare'"):
        DecoderProperties(DecoderParams(word_width=32))
    with pytest.raises(SubbitError, match="word_width=16, lookup='table'"):
        ParserProperties(DecoderParams(lookup="table"))
    with pytest.raises(SubbitError, match="mode must be one of .*, not 'sim'"):
        sby.check(K1, "sim", 5)
    with pytest.raises(SubbitError, match="depth must be an integer >= 1, not 0"):
        sby.check(K1, "bmc", 0)
    with pytest.raises(SubbitError, match="harness must be one of .*, not 'x'"):
        sby.formal_rtlil(K1, "x")
