"""Property tests (hypothesis) of the coder and the format reader, and a bounded run of the
atheris fuzz target `subbit.model.fuzz` (docs/reliability.md)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subbit.model import fuzz, rans, sbw, stream
from subbit.model.errors import FormatError, SubbitError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layers(draw):
    """A coder configuration and symbols drawn from a random (often very skewed) table."""
    M = draw(st.integers(8, 15))
    lanes = draw(st.sampled_from(rans.LANES_ALLOWED))
    ways = draw(st.integers(1, 8))
    nsym = draw(st.integers(1, 12))
    weights = draw(st.lists(st.integers(0, 1000), min_size=nsym, max_size=nsym).filter(any))
    n = draw(st.integers(0, 600))
    seed = draw(st.integers(0, 2**32 - 1))
    p = np.array(weights, dtype=float) / sum(weights)
    sym = np.random.default_rng(seed).choice(nsym, size=n, p=p)
    counts = np.bincount(sym, minlength=nsym) if n else np.asarray(weights)
    return M, lanes, ways, rans.normalize_freqs(counts, M), sym


@SETTINGS
@given(layers())
def test_coder_round_trip(layer):
    M, K, D, f, sym = layer
    states, words = rans.encode(sym, f, M, K, D)
    assert rans.decode(states, words, f, M, len(sym), K, D).tolist() == sym.tolist()


@SETTINGS
@given(layers(), st.data())
def test_coder_corruption_is_an_error_or_other_symbols(layer, data):
    """A corrupted payload, state or count never escapes as anything but a DecodeError."""
    M, K, D, f, sym = layer
    states, words = rans.encode(sym, f, M, K, D)
    words = words.copy()
    if len(words):
        words[data.draw(st.integers(0, len(words) - 1))] ^= data.draw(st.integers(1, 0xFFFF))
    count = len(sym) + data.draw(st.sampled_from([0, 0, 1, 1 << 20]))
    try:
        out = rans.decode(states, words, f, M, count, K, D)
        assert len(out) == count
    except SubbitError:
        pass


@SETTINGS
@given(st.binary(max_size=400))
def test_parse_arbitrary_words(raw):
    words = np.frombuffer(raw[:len(raw) // 2 * 2], dtype="<u2")
    try:
        stream.parse(words, byte_offset=10)
    except FormatError as e:
        assert 10 <= e.offset <= 10 + len(raw)


@SETTINGS
@given(st.binary(max_size=600))
def test_sbw_reader_arbitrary_bytes(raw):
    try:
        sbw.from_bytes(b"\x89SBW\r\n\x1a\n" + raw if raw[:1] == b"\x00" else raw)
    except FormatError as e:
        assert e.offset is not None


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(1, 0xFFFF)), min_size=1, max_size=6),
       st.booleans(), st.booleans())
def test_edited_reference_stream(edits, fix_checks, classed):
    """Word edits on a valid stream (check words optionally recomputed, the adversarial case; the
    v2 reference or the v3 one with row-classed layers): the fuzz target's mode 2, i.e. a subbit
    error or a clean decode, nothing else."""
    body = b"".join(p.to_bytes(2, "little") + x.to_bytes(2, "little") for p, x in edits)
    fuzz.one_input(bytes([0x02 | 0x80 * fix_checks | 0x40 * classed]) + body)


def test_fix_checks_knows_classed_layers():
    """With every check word recomputed, the v3 reference stream is unchanged (the fixer walks its
    class fields and class index), and an edited class field reaches the field checks."""
    words = fuzz._reference()[2].copy()
    fuzz._fix_checks(words)
    assert np.array_equal(words, fuzz._reference()[2])
    config, hw = stream.parse(words)
    h = hw[-2]
    words[h.offset + stream.LAYER_FIELDS.nwords] += 1            # row length
    fuzz._fix_checks(words)
    with pytest.raises(FormatError, match="row length 21 does not divide"):
        stream.parse(words)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(1, 255)), min_size=1, max_size=6))
def test_edited_reference_file(edits):
    body = b"".join(p.to_bytes(2, "little") + bytes([x]) for p, x in edits)
    fuzz.one_input(b"\x03" + body)


def test_fuzz_seeds_decode():
    for s in fuzz.seed_inputs():
        fuzz.one_input(s)


def test_fuzz_target_runs_bounded(tmp_path):
    """The fuzz target for 20 s (atheris if installed, else the random engine): 0 crashes."""
    r = subprocess.run([sys.executable, "-m", "subbit.cli.fuzz_reader", "--seconds", "20",
                        "--corpus", str(tmp_path / "corpus")], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Done" in r.stderr or "0 crashes" in r.stdout
