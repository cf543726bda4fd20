"""Runs NNCodec inside its own virtual environment (see :mod:`subbit.peers`); never imported by subbit.

Usage (by the peer venv's python, started in isolated mode)::

    python -I _nncodec_runner.py REQUEST.json

The request names an operation and the files it exchanges with the caller:

``lossless``
    ``arrays`` (an .npz of int32 tensors ``arr_0 … arr_{n-1}``, named by ``names``) is coded by
    ``nnc.compress`` (further keywords in ``options``) with no quantization (int32 tensors take NNCodec's 'skip' approximation), decoded
    again by ``nnc.decompress`` and compared.
``lossy``
    ``arrays`` holds float32 tensors of rank >= 2 (NNCodec's generic model calls every tensor of rank
    >= 2 a 'weight'); they are quantized by NNCodec's own uniform (``dq`` false) or dependent / trellis
    (``dq`` true) quantizer at ``qp`` (or ``qp_per_tensor``), coded, decoded, and the decoder's float
    reconstruction is written to ``recon``.
``selftest``
    a tiny lossless round trip: the check that the environment works.

The answer is written as JSON to ``result``. Only this standard-library + numpy + nncodec code runs
here: the peer environment pins numpy < 2, so subbit itself is not importable in it.
"""

import importlib
import importlib.abc
import importlib.machinery
import io
import json
import sys
import time
import contextlib
import types


# ---- torchvision / cv2 stand-ins ---------------------------------------------------------------
# `nncodec.nnc` imports its whole PyTorch "framework" (data sets, training, image transforms) at import
# time, and that imports torchvision and cv2. NNCodec's coding path (nnc_core: approximator, coder,
# the deepCABAC extension) uses neither, and torchvision from PyPI does not load beside the CPU torch
# wheel ('operator torchvision::nms does not exist'). So both are replaced by inert modules: any
# lowercase attribute is a sub-module, any other a class that accepts any arguments.

_STUBBED = ("torchvision", "cv2")


class _Inert:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].islower():
            value = importlib.import_module(f"{self.__name__}.{name}")
        else:
            value = type(name, (_Inert,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in _STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []
        module.__version__ = "0+stub"


sys.meta_path.insert(0, _StubFinder())


def _load_nnc():
    # nncodec prints progress to stdout; keep our stdout for nothing but errors.
    with contextlib.redirect_stdout(io.StringIO()):
        from nncodec import nnc
    return nnc


def _quiet(fn, *args, **kwargs):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = fn(*args, **kwargs)
    return out, buf.getvalue()


def _step(qp, qp_density):
    """NNCodec's step size for an integer qp (deepCABAC's quantLayer / dequantLayer)."""
    k = 1 << qp_density
    return (k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density)


def _load_arrays(path, names):
    import numpy as np
    with np.load(path) as z:
        return {name: z[f"arr_{i}"] for i, name in enumerate(names)}


def _save_arrays(path, names, arrays):
    import numpy as np
    np.savez(path, **{f"arr_{i}": arrays[name] for i, name in enumerate(names)})


def _code(nnc, params, **kwargs):
    t0 = time.perf_counter()
    bitstream, log = _quiet(nnc.compress, params, bitstream_path=None, return_bitstream=True,
                            verbose=False, **kwargs)
    t1 = time.perf_counter()
    decoded, _ = _quiet(nnc.decompress, bytearray(bitstream), verbose=False)
    t2 = time.perf_counter()
    return bytes(bitstream), decoded, t1 - t0, t2 - t1, log


def op_lossless(nnc, req):
    import numpy as np
    names = req["names"]
    params = _load_arrays(req["arrays"], names)
    for name, a in params.items():
        if a.dtype != np.int32:
            raise ValueError(f"{name}: lossless coding takes int32 tensors, not {a.dtype}")
    bitstream, decoded, t_enc, t_dec, _ = _code(nnc, params, use_dq=False, **req.get("options", {}))
    mismatched = [n for n in names
                  if n not in decoded or decoded[n].dtype != np.int32 or decoded[n].shape != params[n].shape
                  or not np.array_equal(decoded[n], params[n])]
    return {"bits": 8 * len(bitstream), "bytes": len(bitstream), "encode_s": t_enc, "decode_s": t_dec,
            "exact": not mismatched, "mismatched": mismatched,
            "weights": int(sum(a.size for a in params.values()))}


def op_lossy(nnc, req):
    import numpy as np
    names = req["names"]
    params = _load_arrays(req["arrays"], names)
    for name, a in params.items():
        if a.dtype != np.float32 or a.ndim < 2:
            raise ValueError(f"{name}: lossy coding takes float32 tensors of rank >= 2 "
                             f"(got {a.dtype}, rank {a.ndim})")
    qp_density = int(req.get("qp_density", 2))
    qp_per_tensor = {n: int(q) for n, q in req["qp_per_tensor"].items()}
    bitstream, decoded, t_enc, t_dec, log = _code(
        nnc, params, qp=int(req["qp"]), qp_density=qp_density, qp_per_tensor=qp_per_tensor,
        use_dq=bool(req["dq"]), lambda_scale=float(req.get("lambda_scale", 0.0)), **req.get("options", {}))
    missing = [n for n in names if n not in decoded or decoded[n].shape != params[n].shape]
    if missing:
        raise ValueError(f"decoded bitstream lacks or reshapes tensors: {missing}")
    recon = {n: np.asarray(decoded[n], dtype=np.float32) for n in names}
    _save_arrays(req["recon"], names, recon)
    # quantLayer clips a qp that would overflow int32 and says so on stdout.
    clipped = [line for line in log.splitlines() if "has been clipped" in line]
    steps = {n: _step(q, qp_density) for n, q in qp_per_tensor.items()}
    return {"bits": 8 * len(bitstream), "bytes": len(bitstream), "encode_s": t_enc, "decode_s": t_dec,
            "steps": steps, "clipped": clipped, "weights": int(sum(a.size for a in params.values()))}


def op_selftest(nnc, req):
    import numpy as np
    rng = np.random.default_rng(0)
    params = {"a.weight": rng.integers(-3, 4, size=(8, 16)).astype(np.int32),
              "b.weight": np.zeros((4, 4, 3, 3), dtype=np.int32)}
    bitstream, decoded, _, _, _ = _code(nnc, params, use_dq=False)
    ok = all(np.array_equal(decoded[n], a) for n, a in params.items())
    import nncodec
    try:
        from importlib.metadata import version
        ver = version("nncodec")
    except Exception:  # pragma: no cover - metadata missing
        ver = getattr(nncodec, "__version__", "?")
    import torch
    return {"exact": ok, "bits": 8 * len(bitstream), "nncodec": ver, "numpy": np.__version__,
            "torch": torch.__version__, "torch_cuda": torch.version.cuda}


OPS = {"lossless": op_lossless, "lossy": op_lossy, "selftest": op_selftest}


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        req = json.load(f)
    nnc = _load_nnc()
    out = OPS[req["op"]](nnc, req)
    with open(req["result"], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
