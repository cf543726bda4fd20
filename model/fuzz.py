"""Fuzz target of the weight-stream reader: any input gives codes or a `SubbitError`, nothing else.

Run (atheris / libFuzzer, coverage guided; :func:`run`, on the command line
`subbit.cli.fuzz_reader`)::

    python -m subbit.cli.fuzz_reader --seconds 600            # on demand
    python -m subbit.cli.fuzz_reader --seconds 20             # what CI runs (tests/test_fuzz.py)

Without atheris (it has no wheel for some platforms) the same target runs on
seeded random inputs (``--engine random``). Any exception other than a
`SubbitError` is a crash: the fuzzer stops and prints the input that caused it
(atheris also writes it to ``crash-*``). See ``docs/reliability.md``.

The first input byte picks what the rest is:

0. a ``.sbw`` file image (`subbit.model.sbw.from_bytes`, then the golden decode);
1. a bare word stream (`subbit.model.stream.parse`, then the golden decode);
2. an edit script on a valid reference stream: ``(word index, xor value)`` pairs
   of 16-bit little-endian integers; with bit 7 of the first byte set, every
   check word (stream header, layer headers, payloads) is recomputed
   afterwards, so tables, counts and payloads are exercised past the check
   words (a payload edit then reaches the rANS final-state check);
3. an edit script ``(byte index, xor byte)`` on a valid ``.sbw`` image.

Layers declaring more than ``MAX_FUZZ_WEIGHTS`` weights are parsed, not
decoded: decoding time and memory are linear in the declared count (a valid
one-symbol layer may declare 2**32 - 1 weights).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import faults, sbw, stream
from .errors import FormatError, SubbitError

__all__ = ["MAX_FUZZ_WEIGHTS", "one_input", "seed_inputs", "main"]

MAX_FUZZ_WEIGHTS = 1 << 16
_CONFIG = stream.StreamConfig(prob_bits=10, lanes=2, ways=6)


def _reference():
    """Small valid reference stream and ``.sbw`` image, and the v3 reference stream (built once)."""
    if not hasattr(_reference, "cache"):
        codes = [c[:300] for c in faults.reference_codes(_CONFIG)]
        hw = [stream.encode_codes(c, _CONFIG) for c in codes]
        metas = [sbw.LayerMeta(name=f"l{k}", shape=(len(c),), bits=4, scale=[0.5]) for k, c in enumerate(codes)]
        f = sbw.SbwFile(config=_CONFIG, layers=metas, hw=hw, side={"bias": np.arange(3, dtype=np.float32)})
        classed = hw[:2] + [stream.encode_with_classes(c, _CONFIG, k, n) for c, n, k in faults.classed_reference()]
        _reference.cache = (stream.build(hw, _CONFIG), sbw.to_bytes(f), stream.build(classed, _CONFIG))
    return _reference.cache


def _decode(config, hw, byte_offset=0):
    for k, h in enumerate(hw):
        if h.count <= MAX_FUZZ_WEIGHTS:
            stream.decode_codes(h, config, name=str(k), byte_offset=byte_offset)


def _words(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw[:len(raw) // 2 * 2], dtype="<u2").astype(np.uint16)


def _fix_checks(w: np.ndarray) -> None:
    """Recompute the stream, layer-header and payload check words of ``w`` in place, as far as it parses."""
    SH, LF = stream.STREAM_HEADER, stream.LAYER_FIELDS
    if len(w) < SH.nwords:
        return
    SH.check.put(w, stream.check_word(w[:SH.check.word]))
    h = SH.unpack(w)
    try:
        config = stream.StreamConfig(prob_bits=h["prob_bits"], lanes=1 << h["log2_lanes"], ways=h["ways"])
    except SubbitError:
        return
    if h["version"] == stream.VERSION_CLASSED:
        LF = stream.LAYER_FIELDS_V3
    pos = SH.nwords
    for _ in range(h["layers"]):
        if pos + LF.nwords > len(w):
            return
        f = LF.unpack(w[pos:pos + LF.nwords])
        nsym = f["nsym"] | f["nsym_zero"] << LF.nsym_zero.bit
        T, ncls = f.get("extra_tables", 0) + 1, 0
        if T > 1:
            CF = stream.CLASS_FIELDS
            if pos + LF.nwords + CF.nwords > len(w):
                return
            ncls = CF.unpack(w[pos + LF.nwords:pos + LF.nwords + CF.nwords])["class_words"]
        spans = {r: (s, e) for r, s, e in stream.layer_regions(nsym, f["count"], f["payload_words"], config.states,
                                                                tables=T, class_words=ncls)}
        n = spans["check"][1]                           # the header, its check word included
        if pos + n > len(w):
            return
        w[pos + n - 1] = stream.check_word(w[pos:pos + n - 1])
        s, e = spans["payload check"]                   # over the payload words and the pad word
        if pos + s >= len(w):
            return
        w[pos + s] = stream.check_word(w[pos + n:pos + s])
        pos += e


def one_input(data: bytes) -> None:
    """The fuzz target. Raises only for a bug: anything but a `SubbitError`."""
    if not data:
        return
    mode, body = data[0], data[1:]
    try:
        if mode % 4 == 0:
            f = sbw.from_bytes(body)
            if sum(h.count for h in f.hw) <= MAX_FUZZ_WEIGHTS:
                f.decode_codes()
        elif mode % 4 == 1:
            config, hw = stream.parse(_words(body))
            _decode(config, hw)
        elif mode % 4 == 2:
            w = _reference()[2 if mode & 0x40 else 0].copy()
            edits = _words(body)
            for k in range(0, len(edits) - 1, 2):
                w[int(edits[k]) % len(w)] ^= edits[k + 1]
            if mode & 0x80:
                _fix_checks(w)
            config, hw = stream.parse(w)
            _decode(config, hw)
        else:
            img = bytearray(_reference()[1])
            for k in range(0, len(body) - 2, 3):
                img[int.from_bytes(body[k:k + 2], "little") % len(img)] ^= body[k + 2]
            f = sbw.from_bytes(bytes(img))
            f.decode_codes()
    except FormatError as e:
        if e.offset is None:
            raise AssertionError(f"FormatError without a byte offset: {e}") from None
    except SubbitError:
        pass


def seed_inputs() -> list[bytes]:
    """A starting corpus: the reference stream and file, each in its mode, and empty edit scripts."""
    words, image, classed = _reference()
    return [b"\x00" + image, b"\x01" + words.astype("<u2").tobytes(), b"\x02", b"\x82", b"\x03",
            b"\x01" + classed.astype("<u2").tobytes(), b"\x42", b"\xc2"]


def _random_engine(seconds: float, seed: int) -> int:
    """Fallback without atheris: mutated seeds and random bytes for ``seconds``."""
    rng = np.random.default_rng(seed)
    seeds = seed_inputs()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        if rng.random() < 0.3:
            data = bytes([int(rng.integers(256))]) + rng.bytes(int(rng.integers(0, 200)))
        else:
            data = bytearray(seeds[int(rng.integers(len(seeds)))])
            for _ in range(int(rng.integers(1, 8))):
                data.append(int(rng.integers(256)))
                if len(data) > 1:
                    data[int(rng.integers(1, len(data)))] ^= int(rng.integers(1, 256))
            if rng.random() < 0.2:
                data = data[:int(rng.integers(1, len(data) + 1))]
            data = bytes(data)
        try:
            one_input(data)
        except Exception:
            sys.stderr.write(f"crash on input {data.hex()}\n")
            raise
        n += 1
    return n


def run(seconds: float = 60.0, engine: str | None = None, corpus: str | None = None, seed: int = 0) -> int:
    """Fuzz the reader for ``seconds``: with atheris (``engine`` None: when it imports), its corpus in
    ``corpus`` (created and seeded; default fuzz-corpus in the cache directory of
    `subbit.model.paths`), else on seeded random inputs; 0 when nothing crashed (a crash raises)."""
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "random"
    if engine == "random":
        n = _random_engine(seconds, seed)
        print(f"random engine: {n} inputs in {seconds:g} s, 0 crashes")
        return 0
    import atheris
    from .paths import cache_dir, make_dir
    corpus = make_dir(corpus or cache_dir("fuzz-corpus"), "corpus directory")
    for k, s in enumerate(seed_inputs()):
        with open(os.path.join(corpus, f"seed-{k}"), "wb") as fh:
            fh.write(s)
    from . import rans
    for mod in (rans, stream, sbw):           # coverage feedback from the reader's own code
        for name, obj in list(vars(mod).items()):
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            if isinstance(obj, type):
                for k, v in list(vars(obj).items()):
                    if callable(v) and hasattr(v, "__code__"):
                        setattr(obj, k, atheris.instrument_func(v))
            elif callable(obj) and hasattr(obj, "__code__"):
                setattr(mod, name, atheris.instrument_func(obj))
    atheris.Setup([sys.argv[0], f"-max_total_time={max(1, int(seconds))}", f"-seed={seed + 1}",
                   "-rss_limit_mb=2048", "-print_final_stats=1", corpus], one_input)
    atheris.Fuzz()
    return 0

