"""What ``subbit bench model`` measures: the rANS coders' speed (golden model, compiled coder, constriction)
and compressed size against the entropy (its options are parsed in `subbit.cli.benchmarks`)."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def _best_time(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _cases(n, rng, big=0):
    """Symbol data sets: (name, int codes). Weight-like distributions and extremes; with ``big``,
    also a ``big``-weight Gaussian layer quantized at 3 bits (max-abs step)."""
    lap = np.clip(np.rint(rng.laplace(0, 1.2, n)), -7, 7).astype(np.int64)
    tern = rng.choice([-1, 0, 1], size=n, p=[0.025, 0.95, 0.025])
    sparse8 = np.where(rng.random(n) < 0.99, 0, rng.integers(-127, 128, n))
    uni = rng.integers(-127, 128, n)
    cases = [("laplace, 15 levels", lap), ("ternary, 95% zeros", tern),
             ("8-bit, 99% zeros", sparse8), ("uniform, 255 levels", uni)]
    from subbit.model import quant
    try:
        from subbit.model import checkpoint
        from subbit.model.data import ccexam_weights
        w = checkpoint.load_state_dict(ccexam_weights())["classifier.0.weight"]
        cases.append(("ccexam fc1, RTN 3-bit", quant.quantize_rtn(w, 3)[0].ravel()[:n]))
    except Exception as e:  # noqa: BLE001 - the real-layer row is optional
        print(f"(skipping the ccexam row: {e})")
    if big:
        w = rng.standard_normal(big, dtype=np.float32)
        size = f"{big // 10**6}M" if big % 10**6 == 0 else f"{big}-weight"
        cases.append((f"Gaussian {size}, RTN 3-bit", quant.quantize_rtn(w, 3)[0]))
    return cases


BIG_N = 20_000_000      #: weights of the large input of the full run


def run_model_bench(n=1 << 20, reps=3, configs=((12, 1, 6), (12, 4, 6)), big=0):
    """Golden model, compiled coder (`subbit.model.fast`, checked bit-exact against the golden
    one on every case) and constriction on the same symbols. Inputs above 4M symbols time the
    golden model once (it takes seconds)."""
    import constriction

    from subbit.model import fast, rans
    from subbit.model.report import entropy_bits
    rng = np.random.default_rng(2024)
    rows = []
    for name, codes in _cases(n, rng, big):
        # the 8-bit sparse case is bounded by the table precision at M = 12: show M = 15 too
        extra = ((15, 1, 6),) if name.startswith("8-bit") else ()
        H = entropy_bits(codes)
        for M, K, D in tuple(configs) + extra:
            sym = codes - codes.min()
            freqs = rans.normalize_freqs(np.bincount(sym), M)
            greps = 1 if len(sym) > 4_000_000 else reps
            te, (states, words) = _best_time(lambda: rans.encode(sym, freqs, M, K, D), greps)
            td, dec = _best_time(lambda: rans.decode(states, words, freqs, M, len(sym), K, D), greps)
            assert np.array_equal(dec, sym), "golden round trip failed"
            fast.decode(*fast.encode(sym[:1000], freqs, M, K, D), freqs, M, min(len(sym), 1000), K, D)  # compiled
            freps = reps + 2 * (reps > 1)         # fast calls are short: more of them, less noise
            tfe, (fstates, fwords) = _best_time(lambda: fast.encode(sym, freqs, M, K, D), freps)
            tfd, fdec = _best_time(lambda: fast.decode(states, words, freqs, M, len(sym), K, D), freps)
            assert np.array_equal(fstates, states) and np.array_equal(fwords, words), "fast encode differs"
            assert np.array_equal(fdec, sym), "fast decode differs"
            row = {"case": name, "n": len(sym), "M": M, "lanes": K, "ways": D,
                   "entropy_bps": H / len(sym),
                   "payload_over_entropy": 16 * len(words) / H if H else float("nan"),
                   "with_states_over_entropy": (16 * len(words) + 32 * len(states)) / H if H else float("nan"),
                   "bits_per_weight": (16 * len(words) + 32 * len(states)) / len(sym),
                   "enc_msym_s": len(sym) / te / 1e6, "dec_msym_s": len(sym) / td / 1e6,
                   "fast_enc_msym_s": len(sym) / tfe / 1e6, "fast_dec_msym_s": len(sym) / tfd / 1e6,
                   "reps": reps, "fast_reps": freps, "load": os.getloadavg()[0]}
            if K == 1:
                model = constriction.stream.model.Categorical(np.bincount(sym) / len(sym), perfect=False)
                s32 = sym.astype(np.int32)

                def c_enc():
                    c = constriction.stream.stack.AnsCoder()
                    c.encode_reverse(s32, model)
                    return c.get_compressed()
                tce, comp = _best_time(c_enc, freps)
                tcd, cdec = _best_time(lambda: constriction.stream.stack.AnsCoder(comp).decode(model, len(sym)),
                                       freps)
                assert np.array_equal(cdec, s32)
                row.update({"constriction_enc_msym_s": len(sym) / tce / 1e6,
                            "constriction_dec_msym_s": len(sym) / tcd / 1e6,
                            "constriction_over_entropy": 32 * len(comp) / H if H else float("nan"),
                            "constriction_bits_per_weight": 32 * len(comp) / len(sym)})
            rows.append(row)
    return rows


def targets(rows):
    """Issue 24's targets on the ccexam and large inputs (K = 1 rows): fast decode >= constriction's
    decode, fast encode >= 0.5 x constriction's encode. ``[(case, M, dec_ratio, enc_ratio, met)]``."""
    out = []
    for r in rows:
        if "constriction_dec_msym_s" in r and (r["case"].startswith("ccexam") or r["n"] >= 10_000_000):
            dr = r["fast_dec_msym_s"] / r["constriction_dec_msym_s"]
            er = r["fast_enc_msym_s"] / r["constriction_enc_msym_s"]
            out.append((r["case"], r["M"], dr, er, dr >= 1 and er >= 0.5))
    return out


def model_markdown(rows, command):
    out = ["## rANS coder speed and size: golden model, compiled coder, constriction (`subbit bench model`)", "",
           f"Command: `{command}` on {platform.machine()} / Python {platform.python_version()}, "
           f"best of {rows[0]['reps']} runs (golden; once on inputs above 4M symbols) and of "
           f"{rows[0]['fast_reps']} (fast, constriction), one core; 1-minute load average "
           f"{min(r['load'] for r in rows):.1f}..{max(r['load'] for r in rows):.1f} during the run on "
           f"{os.cpu_count()} cores" + (" (other jobs running: the compiled coders' speeds then vary up to 2x "
                                        "between runs)" if max(r["load"] for r in rows) >= 1 else "") + ". "
           "*golden* is the pure-Python specification `subbit.model.rans`; *fast* is the compiled (numba) coder "
           "`subbit.model.fast` that `subbit compress` / `decode` use (bit-exact: checked on every row; first-call "
           "compile excluded). Size ratios are coded bits / empirical entropy of the data "
           "(payload words alone, and with the 32-bit initial states); b/w is payload + states per weight. "
           "constriction 0.5 `AnsCoder` "
           "(Rust, 32-bit words, 24-bit probabilities, `perfect=False`) codes the same symbols with the "
           "empirical probabilities; the last columns divide fast by constriction speed.", "",
           "| data | n | M | K | D | entropy b/sym | payload/H | +states/H | golden enc Msym/s | golden dec Msym/s "
           "| constriction enc | constriction dec | dec speed ratio | constriction size/H "
           "| b/w | constriction b/w | fast enc Msym/s | fast dec Msym/s | fast/constriction enc | fast/constriction dec |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        has_c = "constriction_dec_msym_s" in r
        c = ("| {:.1f} | {:.1f} | 1/{:.0f} | {:.5f} ".format(
            r["constriction_enc_msym_s"], r["constriction_dec_msym_s"],
            r["constriction_dec_msym_s"] / r["dec_msym_s"], r["constriction_over_entropy"])
            if has_c else "| | | | ")
        cb = f"{r['constriction_bits_per_weight']:.4f}" if has_c else ""
        ratios = ("| {:.2f} | {:.2f} ".format(r["fast_enc_msym_s"] / r["constriction_enc_msym_s"],
                                            r["fast_dec_msym_s"] / r["constriction_dec_msym_s"])
                  if has_c else "| | ")
        out.append(f"| {r['case']} | {r['n']} | {r['M']} | {r['lanes']} | {r['ways']} | {r['entropy_bps']:.4f} "
                   f"| {r['payload_over_entropy']:.5f} | {r['with_states_over_entropy']:.5f} "
                   f"| {r['enc_msym_s']:.2f} | {r['dec_msym_s']:.2f} {c}"
                   f"| {r['bits_per_weight']:.4f} | {cb} | {r['fast_enc_msym_s']:.1f} | {r['fast_dec_msym_s']:.1f} "
                   f"{ratios}|")
    t = targets(rows)
    if t:
        out += ["", "Targets (issue 24), fast against constriction at K = 1: decode at least as fast, encode at "
                "least half as fast. " + "; ".join(
                    f"{case} (M = {M}): decode {dr:.2f}x, encode {er:.2f}x, {'met' if ok else 'NOT met'}"
                    for case, M, dr, er, ok in t) + "."]
    out += ["", "*8-bit, 99 % zeros* at M = 12 is the precision floor of an M-bit frequency table, not of "
            "the coder: each of the 254 rare symbols needs at least 1/4096 of the probability (6.2 % of "
            "the mass together, against their true 1 %), so every zero costs log2(0.99/0.938) = 0.078 "
            "bits on a 0.16-bit source. At M = 15 (row above; `--prob-bits 15` for streams of such "
            "layers) the same data codes close to its entropy. Every other case, and every real "
            "layer measured, is within 1.005 x entropy at M = 12."]
    return "\n".join(out)
