"""`subbit bench model` on small data: golden and compiled round trips (bit-exact with each other),
sizes against entropy, the table."""

from __future__ import annotations

from subbit.bench_model import model_markdown, run_model_bench, run_network_bench, targets


def test_model_bench_rows_and_table():
    rows = run_model_bench(n=1 << 15, reps=1, big=50_000)
    cases = {r["case"] for r in rows}
    assert {"laplace, 15 levels", "ternary, 95% zeros", "uniform, 255 levels",
            "Gaussian 50000-weight, RTN 3-bit"} <= cases
    for r in rows:
        assert r["dec_msym_s"] > 0 and r["enc_msym_s"] > 0
        assert r["fast_dec_msym_s"] > 0 and r["fast_enc_msym_s"] > 0
        # payload + initial states hold all the information: never below the entropy
        assert r["with_states_over_entropy"] > 0.999, r
        if not r["case"].startswith("8-bit") or r["M"] == 15:
            assert r["payload_over_entropy"] < 1.01, r
        if r["lanes"] == 1:
            assert r["constriction_dec_msym_s"] > 0
    assert any(r["M"] == 15 for r in rows)          # the precision-floor case at M = 15
    md = model_markdown(rows, "subbit bench model --quick")
    first, _, rest = md.partition("\n\n|")[2].partition("\n\n")
    assert first.count("\n| ") == len(rows)         # header + one row per measurement
    assert all(line.count("|") == 21 for line in ("|" + first).splitlines())
    classed = [r for r in rows if "classed_tables" in r]
    if any(r["case"].startswith("ccexam") for r in rows):
        # the row-classed coder (issue 27) on the ccexam layer's whole rows: never above one table
        assert classed and all(r["classed_layer_bpw"] <= r["static_layer_bpw"] for r in classed)
        assert "Row-classed coder (issue 27" in md and md.count("| ccexam fc1") == 2 * len(classed)
    assert "precision floor" in md
    if any(r["case"].startswith("ccexam") for r in rows):
        assert [t[0] for t in targets(rows)] == ["ccexam fc1, RTN 3-bit"] and "Targets (issue 24)" in md


def test_network_rows_row_classes():
    """The whole ccexam stream with row classes: v3, at or below issue 27's 0.72 bits/weight, and
    never above one table; the table lists it."""
    nets = run_network_bench(quick=True)
    if not nets:
        return
    (r,) = nets
    assert r["static"]["version"] == 2 and r["classed"]["version"] == 3
    assert r["classed"]["bpw"] <= 0.72 < r["static"]["bpw"]
    md = model_markdown(run_model_bench(n=1 << 12, reps=1), "x", nets)
    assert "| ccexam CNN, RTN 3-bit | 421408 | 4 |" in md
