"""Peer codecs measured side by side with subbit, each in its own virtual environment.

NNCodec (Fraunhofer HHI's implementation of MPEG NNC, ISO/IEC 15938-17: DeepCABAC, uniform and
dependent / trellis-coded quantization) pins ``numpy<2`` and pulls torchvision, neither of which
fits subbit's environment. So :func:`ensure_nncodec_venv` builds a separate venv once, under the
per-user cache, and :func:`nncodec_lossless` / :func:`nncodec_lossy` run NNCodec there through
``_nncodec_runner.py`` (a subprocess; tensors go through .npz files, answers through JSON).
subbit's own venv is never changed.

NNCodec's quantization parameter: with ``qp_density`` d (default 2, k = 2**d) the step is

    step(qp) = (k + (qp mod k)) * 2**(floor(qp / k) - d)

i.e. 2**(qp/4) at qp_density 2, linear between powers of two (qp = -32 is 1/256, qp = -28 is 1/128;
NNCodec's default qp = -38 is 6/4096). Reconstructions are ``step * level``; with dependent
quantization (``dq``) the trellis chooses, per weight, between two quantizers of step 2·step
(the even, resp. the odd multiples of ``step`` and zero), so at the same qp dq spends fewer bits
and reaches a lower SQNR than uniform rounding (at high rates it is close to uniform at qp + k).
Both quantizers minimize distortion alone unless ``lambda_scale`` > 0 (rate-distortion optimized;
NNCodec's default is 0).

``python -m subbit.cli.nncodec_table`` builds the venv if needed and prints NNCodec's numbers on the ccexam
CNN: lossless bits/weight of the 3-bit round-to-nearest codes, and bits/weight vs SQNR over qp
with dq off and on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from .model.errors import SubbitError

__all__ = ["NNCODEC_VERSION", "TORCH_SPEC", "CODING_OPTIONS", "PeerError", "peers_cache_dir", "nncodec_dir",
           "ensure_nncodec_venv", "nncodec_step", "nncodec_lossless", "nncodec_lossy", "sqnr_db"]

NNCODEC_VERSION = "2.1.3"
# The CPU build of the torch subbit itself uses. The local version label keeps pip from ever
# resolving PyPI's CUDA build (and its ~3 GB of nvidia wheels): without a CPU wheel at hand the
# install fails at once instead.
TORCH_SPEC = "torch==2.13.0+cpu"
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nncodec_runner.py")
READY = "READY.json"      # written last: the venv is complete and passed its self-test
LOG = "build.log"


class PeerError(SubbitError):
    """A peer's environment could not be built, or the peer failed on a request."""


def peers_cache_dir() -> str:
    """``peers/`` of the per-user cache (:func:`subbit.model.paths.cache_root`)."""
    from subbit.model.paths import cache_root
    return os.path.join(cache_root(), "peers")


def nncodec_dir() -> str:
    """The folder of NNCodec's venv, its build log and its lock."""
    return os.path.join(peers_cache_dir(), f"nncodec-{NNCODEC_VERSION}")


def _venv_python(root: str) -> str:
    return os.path.join(root, "venv", "bin", "python")


def _child_env() -> dict:
    """The environment for pip and the runner: this process's, less what points into subbit's venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


@contextlib.contextmanager
def _locked(path: str, progress=None):
    """An exclusive lock on ``path`` (created if missing), held for the block: one builder at a time;
    the others wait (saying so through ``progress``), then find the venv ready."""
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                progress(f"nncodec venv: another process is building it; waiting ({path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ready(root: str) -> dict | None:
    try:
        with open(os.path.join(root, READY)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if info.get("nncodec") != NNCODEC_VERSION or not os.path.isfile(_venv_python(root)):
        return None
    return info


def _run_logged(cmd: list[str], log_path: str, what: str, progress) -> None:
    progress(f"nncodec venv: {what}")
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        t = time.perf_counter()
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_child_env()).returncode
        except OSError as e:
            rc = None
            log.write(f"cannot run: {e}\n")
        log.write(f"# exit {rc} after {time.perf_counter() - t:.1f} s\n")
    if rc != 0:
        raise PeerError(f"building NNCodec's venv failed at '{what}' (exit {rc}); see {log_path}")


def ensure_nncodec_venv(root: str | None = None, progress=print, *, packages: list[str] | None = None) -> str:
    """Build NNCodec's venv once (cached) and return its python.

    ``root`` defaults to :func:`nncodec_dir`. The venv is ``root/venv``; pip's output goes to
    ``root/build.log``. Steps: ``python -m venv``; ``pip install torch==2.13.0+cpu`` (first, so that
    nothing pulls a CUDA torch); ``pip install nncodec==2.1.3`` under a constraint file holding torch
    at that build (NNCodec compiles its deepCABAC extension with the system C++ compiler); then a
    self-test in the venv (a small lossless round trip). ``READY.json`` is written last; until it
    exists the venv counts as absent and is rebuilt from scratch. A lock file (``root.lock``) makes
    concurrent callers wait for one builder. ``packages`` replaces ``["nncodec==2.1.3"]`` (tests).

    Raises :class:`PeerError` (a :class:`SubbitError`) naming the log when a step fails.
    """
    root = os.path.abspath(root or nncodec_dir())
    if _ready(root):
        return _venv_python(root)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with _locked(root + ".lock", progress):
        if _ready(root):           # built by another process while we waited
            return _venv_python(root)
        t0 = time.perf_counter()
        venv = os.path.join(root, "venv")
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(root, READY))
        if os.path.exists(venv):
            shutil.rmtree(venv)
        os.makedirs(root, exist_ok=True)
        log_path = os.path.join(root, LOG)
        with open(log_path, "w") as log:
            log.write(f"# NNCodec {NNCODEC_VERSION} venv for subbit, built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        constraints = os.path.join(root, "constraints.txt")
        with open(constraints, "w") as f:
            f.write(TORCH_SPEC + "\n")
        py = _venv_python(root)
        _run_logged([sys.executable, "-m", "venv", venv], log_path, "python -m venv", progress)
        pip = [py, "-m", "pip", "install", "--no-input"]
        _run_logged(pip + [TORCH_SPEC], log_path, f"pip install {TORCH_SPEC}", progress)
        wanted = packages if packages is not None else [f"nncodec=={NNCODEC_VERSION}"]
        _run_logged(pip + ["-c", constraints] + wanted, log_path,
                    f"pip install {' '.join(wanted)} (torch held by {constraints})", progress)
        progress("nncodec venv: self-test")
        try:
            info = _call_runner(py, {"op": "selftest"}, log_path=log_path)
        except PeerError as e:
            raise PeerError(f"NNCodec's venv was built but its self-test failed: {e}; see {log_path}") from None
        if not info.get("exact") or info.get("torch_cuda") is not None:
            with open(log_path, "a") as log:
                log.write(f"self-test: {json.dumps(info)}\n")
            raise PeerError(f"NNCodec's venv fails its self-test ({info}); see {log_path}")
        info.update(built_s=round(time.perf_counter() - t0, 1), python=py)
        with open(os.path.join(root, READY + ".tmp"), "w") as f:
            json.dump(info, f, indent=1)
        os.replace(os.path.join(root, READY + ".tmp"), os.path.join(root, READY))
        progress(f"nncodec venv: ready in {info['built_s']:.0f} s ({root})")
        return py


def _call_runner(py: str, req: dict, *, log_path: str | None = None, tmp: str | None = None) -> dict:
    """Run one request in the peer venv; returns the runner's JSON answer."""
    with contextlib.ExitStack() as stack:
        if tmp is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="subbit-nncodec-"))
        req = dict(req, result=os.path.join(tmp, "result.json"))
        req_path = os.path.join(tmp, "request.json")
        with open(req_path, "w") as f:
            json.dump(req, f)
        # -I: isolated (no user site, no PYTHON* variables, the runner's folder -- subbit's
        # package -- not on sys.path).
        proc = subprocess.run([py, "-I", RUNNER, req_path], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=_child_env(), cwd=tmp)
        if log_path:
            with open(log_path, "a") as log:
                log.write(f"\n$ {py} -I {RUNNER} ({req['op']})\n{proc.stdout}{proc.stderr}# exit {proc.returncode}\n")
        if proc.returncode != 0 or not os.path.isfile(req["result"]):
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise PeerError(f"NNCodec's runner failed on '{req['op']}' (exit {proc.returncode}): {tail}")
        with open(req["result"]) as f:
            return json.load(f)


def _save_npz(path: str, arrays: dict) -> list[str]:
    names = list(arrays)
    np.savez(path, **{f"arr_{i}": arrays[n] for i, n in enumerate(names)})
    return names


def nncodec_step(qp: int, qp_density: int = 2) -> float:
    """NNCodec's quantization step for ``qp`` (see the module docstring)."""
    k = 1 << qp_density
    return (k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density)


# Keywords of nnc.compress that only change how the integers are coded (none changes quantization).
CODING_OPTIONS = ("row_skipping", "scan_order", "cabac_unary_length_minus1", "param_opt", "tca")


def _options(row_skipping: bool, options: dict | None) -> dict:
    opts = dict(options or {})
    unknown = set(opts) - set(CODING_OPTIONS)
    if unknown:
        raise SubbitError(f"unknown NNCodec coding options {sorted(unknown)}; known: {list(CODING_OPTIONS)}")
    opts.setdefault("row_skipping", bool(row_skipping))
    return opts


def nncodec_lossless(codes: dict, *, row_skipping: bool = True, options: dict | None = None,
                     python: str | None = None) -> dict:
    """Code integer tensors losslessly with NNCodec (DeepCABAC) and decode them again.

    ``codes`` maps names to integer arrays (any shape; values must fit int32); NNCodec takes int32
    tensors as already quantized and codes them as they are. Its settings are the defaults but for
    ``row_skipping`` (NNC's flag per all-zero row of a weight matrix), on by default because it is
    NNCodec's best lossless setting here (ccexam CNN, 3-bit codes: 0.7005 bits/weight with it,
    0.7062 without). ``options`` passes further :data:`CODING_OPTIONS` to ``nnc.compress``.

    Returns ``bits`` (the
    whole bitstream NNCodec writes: NNR headers included), ``bytes``, ``weights`` (elements),
    ``bits_per_weight``, ``encode_s`` and ``decode_s`` (wall time inside the peer, interpreter start
    and imports excluded). Raises :class:`PeerError` if decoding does not give the integers back.
    """
    opts = _options(row_skipping, options)
    arrays = {}
    for name, a in codes.items():
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.integer):
            raise SubbitError(f"{name}: nncodec_lossless takes integer codes, not {a.dtype}")
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise SubbitError(f"{name}: codes do not fit int32")
        arrays[str(name)] = np.ascontiguousarray(a, dtype=np.int32)
    if not arrays:
        raise SubbitError("nncodec_lossless: no tensors")
    py = python or ensure_nncodec_venv()
    with tempfile.TemporaryDirectory(prefix="subbit-nncodec-") as tmp:
        names = _save_npz(os.path.join(tmp, "codes.npz"), arrays)
        out = _call_runner(py, {"op": "lossless", "arrays": os.path.join(tmp, "codes.npz"), "names": names,
                                "options": opts}, tmp=tmp)
    if not out["exact"]:
        raise PeerError(f"NNCodec's lossless round trip changed tensors {out['mismatched']}")
    out["bits_per_weight"] = out["bits"] / out["weights"]
    return out


def nncodec_lossy(weights: dict, qp, dq: bool, *, qp_density: int = 2, lambda_scale: float = 0.0,
                  row_skipping: bool = True, options: dict | None = None, python: str | None = None) -> dict:
    """Quantize float weight tensors with NNCodec's own quantizer, code, decode.

    ``weights`` maps names to float tensors of rank >= 2 (NNCodec's generic model treats exactly
    those as weights; pass no biases or norms). ``qp`` is one int for every tensor or a dict of
    ints per tensor; ``dq`` selects dependent (trellis-coded) quantization instead of uniform
    rounding; ``lambda_scale`` > 0 makes the quantizer rate-distortion optimized (NNCodec's default
    is 0); ``row_skipping`` and ``options`` as for :func:`nncodec_lossless`. Returns ``bits`` (whole bitstream), ``bytes``, ``weights``, ``bits_per_weight``,
    ``recon`` (name -> float32 array: what NNCodec's decoder reconstructs), ``sqnr_db`` (over all
    tensors together), ``steps`` (name -> step size), ``qps``, ``encode_s`` and ``decode_s``.
    """
    opts = _options(row_skipping, options)
    arrays = {}
    for name, w in weights.items():
        w = np.asarray(w)
        if w.ndim < 2 or not np.issubdtype(w.dtype, np.floating) or w.size == 0:
            raise SubbitError(f"{name}: nncodec_lossy takes non-empty float tensors of rank >= 2 "
                              f"(got {w.dtype}, shape {list(w.shape)})")
        if not np.all(np.isfinite(w)):
            raise SubbitError(f"{name}: NaN or infinite weights")
        arrays[str(name)] = np.ascontiguousarray(w, dtype=np.float32)
    if not arrays:
        raise SubbitError("nncodec_lossy: no tensors")
    if isinstance(qp, dict):
        missing = set(arrays) - set(map(str, qp))
        if missing:
            raise SubbitError(f"nncodec_lossy: no qp for {sorted(missing)}")
        qps = {str(n): int(q) for n, q in qp.items() if str(n) in arrays}
        qp0 = next(iter(qps.values()))
    else:
        qp0 = int(qp)
        qps = {n: qp0 for n in arrays}
    py = python or ensure_nncodec_venv()
    with tempfile.TemporaryDirectory(prefix="subbit-nncodec-") as tmp:
        names = _save_npz(os.path.join(tmp, "weights.npz"), arrays)
        req = {"op": "lossy", "arrays": os.path.join(tmp, "weights.npz"), "names": names,
               "recon": os.path.join(tmp, "recon.npz"), "qp": qp0, "qp_per_tensor": qps,
               "qp_density": int(qp_density), "dq": bool(dq), "lambda_scale": float(lambda_scale),
               "options": opts}
        out = _call_runner(py, req, tmp=tmp)
        with np.load(req["recon"]) as z:
            recon = {n: z[f"arr_{i}"] for i, n in enumerate(names)}
    if out.get("clipped"):
        raise PeerError(f"NNCodec clipped a qp: {out['clipped']}")
    out.update(recon=recon, qps=qps, bits_per_weight=out["bits"] / out["weights"],
               sqnr_db=sqnr_db(arrays, recon))
    return out


def sqnr_db(weights: dict, recon: dict) -> float:
    """10·log10(Σw² / Σ(w - ŵ)²) over all tensors of ``weights`` together (inf if exact)."""
    sig = sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for w in weights.values())
    err = sum(float(np.sum((np.asarray(weights[n], np.float64) - np.asarray(recon[n], np.float64)) ** 2))
              for n in weights)
    return float("inf") if err == 0 else 10.0 * np.log10(sig / err)


def ccexam_table(qps=range(-14, 1), lambda_scale: float = 0.0, progress=print) -> dict:
    """NNCodec on the ccexam CNN's coded tensors: lossless on the 3-bit RTN codes, lossy per qp and dq."""
    from .model.checkpoint import load_state_dict
    from .model.compress import ccexam_codes, is_coded
    from .model.data import ccexam_weights
    sd = load_state_dict(ccexam_weights())
    weights = {k: w for k, w in sd.items() if is_coded(k, w)}
    py = ensure_nncodec_venv(progress=progress)
    lossless = nncodec_lossless(dict(zip(weights, ccexam_codes(3))), python=py)
    rows = []
    for qp in qps:
        for dq in (False, True):
            r = nncodec_lossy(weights, qp, dq, lambda_scale=lambda_scale, python=py)
            rows.append({"qp": qp, "step": nncodec_step(qp), "dq": dq, "bits_per_weight": r["bits_per_weight"],
                         "sqnr_db": r["sqnr_db"], "encode_s": r["encode_s"], "decode_s": r["decode_s"]})
    return {"weights": lossless["weights"], "lossless_3bit": lossless, "lossy": rows}
