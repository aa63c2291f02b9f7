#!/usr/bin/env python3
"""Golden values for specs/golden_spec.lua, computed with PyTorch in float64:
values from outside the project, so that a misreading of the contract
(docs/losses.md) shared by the reference and a fast kernel is caught.

    python3 scripts/golden_torch.py --out specs/fixtures/golden
    python3 scripts/golden_torch.py --selftest --out DIR   (no PyTorch needed)

Each case is a folder of .npy files (f64 values, i64 targets) and one line of
manifest.lua, which names the op, the options and where the values come from:

  torch     torch.nn.functional.cross_entropy itself: the options PyTorch has
            with the same meaning (weight, ignore_index, label_smoothing,
            reduction; the smoothing term weighted by w_j and the mean, its
            smoothing part included, divided by the target weights' sum D).
  composed  the options PyTorch lacks (logit_scale, softcap, lse_square_scale,
            log_probs, entropy, linear cross entropy) written as PyTorch
            expressions from the contract's formulas; the cross-entropy part
            is still F.cross_entropy, and every gradient comes from autograd.

Inputs are deterministic (a seeded torch.Generator per case). Logits are
rounded to values that bf16 holds exactly and weights to f32, so that the
kernels see exactly the golden inputs whatever the logits dtype. The .npy
files are written by the small writer below (format 1.0), so the selftest
runs without NumPy or PyTorch.
"""
import argparse
import os
import struct
import sys
import traceback


# --- .npy writing (no NumPy needed) -----------------------------------------

def npy_bytes(values, shape, descr):
    """values: a flat list; descr '<f8' or '<i8'."""
    shape_txt = "()" if not shape else "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_txt)
    # magic (6) + version (2) + header length (2) + header + '\n', a multiple of 64
    total = 10 + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    fmt = "<%d%s" % (len(values), "d" if descr == "<f8" else "q")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + struct.pack(fmt, *values)


def write_npy(path, values, shape, descr="<f8"):
    n = 1
    for s in shape:
        n *= s
    if len(values) != n:
        raise ValueError("%s: %d values for shape %s" % (path, len(values), shape))
    with open(path, "wb") as f:
        f.write(npy_bytes(values, shape, descr))


def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, lua_value(v[k])) for k in sorted(v)) + " }"
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    raise TypeError("no Lua form for %r" % (v,))


def selftest(out):
    """Writes files whose values golden_spec.lua's loader check knows."""
    os.makedirs(out, exist_ok=True)
    write_npy(os.path.join(out, "f64_2x3.npy"), [1.5, -2.0, 0.0, 1e-300, -1e300, 3.25], [2, 3])
    write_npy(os.path.join(out, "i64_4.npy"), [0, -100, 7, 2**40], [4], "<i8")
    write_npy(os.path.join(out, "f64_scalar.npy"), [0.125], [])
    with open(os.path.join(out, "manifest.lua"), "w") as f:
        f.write("return {\n  %s,\n}\n" % lua_value({"name": "selftest", "opts": {"reduction": "mean", "softcap": 2.5}}))
    print("selftest files in", out)


# --- the cases ---------------------------------------------------------------

def build_cases():
    """(name, op, source, spec) with spec holding shapes and options."""
    N, V = 8, 37  # V not a multiple of 8: the kernels' vector tail
    ign = [1, 5]  # rows whose target is set to ignore_index
    c = []

    def ce(name, source="torch", **kw):
        spec = {"n": N, "v": V}
        spec.update(kw)
        c.append((name, "cross_entropy", source, spec))

    # options PyTorch has, with its semantics
    for red in ("mean", "sum"):
        ce("plain_" + red, reduction=red)
    ce("plain_none_grad_output", reduction="none", grad_output="rows")
    ce("plain_mean_grad_output", reduction="mean", grad_output=2.5)
    ce("plain_sum_negative_grad_output", reduction="sum", grad_output=-0.5)
    for red in ("mean", "sum"):
        ce("weight_" + red, reduction=red, weight=True)
    ce("weight_none_grad_output", reduction="none", weight=True, grad_output="rows")
    ce("ignore_mean", reduction="mean", ignored=ign)
    ce("ignore_none_grad_output", reduction="none", ignored=ign, grad_output="rows")
    ce("weight_ignore_mean", reduction="mean", weight=True, ignored=ign)
    ce("weight_ignore_valid_class_mean", reduction="mean", weight=True, ignore_index=3, ignored=ign)
    ce("smooth_mean", reduction="mean", label_smoothing=0.1)
    ce("smooth_none_grad_output", reduction="none", label_smoothing=0.25, grad_output="rows")
    ce("smooth_ignore_sum", reduction="sum", label_smoothing=0.4, ignored=ign)
    ce("weight_smooth_mean", reduction="mean", weight=True, label_smoothing=0.2)
    ce("weight_smooth_ignore_mean", reduction="mean", weight=True, label_smoothing=0.3, ignored=ign, grad_output=0.75)
    ce("weight_smooth_full_sum", reduction="sum", weight=True, label_smoothing=1.0)
    ce("weight_smooth_ignore_none_grad_output", reduction="none", weight=True, label_smoothing=0.15, ignored=ign,
       grad_output="rows")
    ce("weight_smooth_ignore_valid_class_mean", reduction="mean", weight=True, label_smoothing=0.2, ignore_index=0,
       ignored=ign)

    # options PyTorch lacks, composed from the contract's formulas
    ce("softcap_mean", "composed", reduction="mean", softcap=5.0)
    ce("scale_sum", "composed", reduction="sum", logit_scale=1.75)
    ce("softcap_scale_mean", "composed", reduction="mean", softcap=4.0, logit_scale=2.5)
    ce("softcap_negative_scale_none_grad_output", "composed", reduction="none", softcap=10.0, logit_scale=-0.7,
       grad_output="rows")
    ce("zloss_mean", "composed", reduction="mean", lse_square_scale=0.05, ignored=ign)
    ce("weight_zloss_mean", "composed", reduction="mean", weight=True, lse_square_scale=0.1, ignored=ign)
    ce("weight_zloss_none_grad_output", "composed", reduction="none", weight=True, lse_square_scale=0.3,
       ignored=ign, grad_output="rows")
    ce("weight_smooth_zloss_softcap_scale_mean", "composed", reduction="mean", weight=True, label_smoothing=0.1,
       lse_square_scale=0.01, softcap=6.0, logit_scale=0.8, ignore_index=2, ignored=ign, grad_output=1.5)
    ce("weight_smooth_zloss_softcap_scale_sum", "composed", reduction="sum", weight=True, label_smoothing=0.3,
       lse_square_scale=0.02, softcap=3.0, logit_scale=1.5, ignored=ign)
    c.append(("log_probs_softcap_scale", "log_probs", "composed",
              {"n": N, "v": V, "softcap": 6.0, "logit_scale": 1.25, "ignored": ign, "grad_output": "rows"}))
    c.append(("log_probs_plain", "log_probs", "composed", {"n": N, "v": V, "grad_output": "rows"}))
    c.append(("entropy_softcap_scale", "entropy", "composed",
              {"n": N, "v": V, "softcap": 5.0, "logit_scale": 0.9, "grad_output": "rows"}))
    c.append(("entropy_plain", "entropy", "composed", {"n": N, "v": V, "grad_output": "rows"}))
    c.append(("linear_ce_weight_smooth_bias_mean", "linear_cross_entropy", "composed",
              {"n": N, "v": V, "h": 16, "bias": True, "weight": True, "label_smoothing": 0.1, "reduction": "mean",
               "ignored": ign}))
    c.append(("linear_ce_zloss_softcap_none_grad_output", "linear_cross_entropy", "composed",
              {"n": N, "v": V, "h": 16, "bias": False, "lse_square_scale": 0.05, "softcap": 8.0, "reduction": "none",
               "grad_output": "rows"}))
    return c


CE_OPTS = ("reduction", "ignore_index", "label_smoothing", "logit_scale", "softcap", "lse_square_scale")


def generate(out):
    import torch
    import torch.nn.functional as F

    torch.set_default_dtype(torch.float64)
    f64 = torch.float64

    def bf16_exact(t):
        return t.to(torch.bfloat16).to(f64)

    def f32_exact(t):
        return t.to(torch.float32).to(f64)

    def transform(x, s, c):
        y = s * x
        return c * torch.tanh(y / c) if c > 0 else y

    def ce_loss(z, t, spec, w):
        """Cross entropy of the contract from z: loss, lse (0 on ignored rows), z_loss."""
        red = spec.get("reduction", "mean")
        ii = spec.get("ignore_index", -100)
        eps = spec.get("label_smoothing", 0.0)
        lam = spec.get("lse_square_scale", 0.0)
        keep = (t != ii).to(f64)
        lse = torch.logsumexp(z, dim=1) * keep
        ce_rows = F.cross_entropy(z, t, weight=w, ignore_index=ii, label_smoothing=eps, reduction="none")
        zl = lam * lse * lse
        if red == "none":
            loss = ce_rows + zl
        elif red == "sum":
            loss = F.cross_entropy(z, t, weight=w, ignore_index=ii, label_smoothing=eps, reduction="sum") + zl.sum()
        else:
            # PyTorch's mean (divided by D); the z-loss is averaged over the rows kept (K)
            loss = F.cross_entropy(z, t, weight=w, ignore_index=ii, label_smoothing=eps, reduction="mean")
            if lam > 0:
                loss = loss + zl.sum() / keep.sum()
        return loss, lse, zl

    def one_case(k, name, op, source, spec):
        g = torch.Generator().manual_seed(1000 + k)
        n, v = spec["n"], spec["v"]
        ii = spec.get("ignore_index", -100)
        s, cap = spec.get("logit_scale", 1.0), spec.get("softcap", 0.0)
        files = {}
        t = torch.randint(0, v, (n,), generator=g)
        if ii >= 0:
            t[t == ii] = (ii + 1) % v  # only the rows listed below are ignored
        for i in spec.get("ignored", []):
            t[i] = ii
        if op == "entropy":
            t = None
        w = f32_exact(torch.rand(v, generator=g) * 2 + 0.05) if spec.get("weight") else None
        go_spec = spec.get("grad_output", 1.0)
        go = bf16_exact(torch.randn(n, generator=g)) if go_spec == "rows" else torch.tensor(float(go_spec))

        if op == "linear_cross_entropy":
            H = spec["h"]
            h = f32_exact(torch.randn(n, H, generator=g))
            W = f32_exact(torch.randn(v, H, generator=g) * 0.5)
            b = f32_exact(torch.randn(v, generator=g)) if spec["bias"] else None
            h.requires_grad_(True)
            W.requires_grad_(True)
            if b is not None:
                b.requires_grad_(True)
            x = h @ W.T + (b if b is not None else 0)
            loss, lse, zl = ce_loss(transform(x, s, cap), t, spec, w)
            (loss * go).sum().backward()
            files.update(h=h.detach(), W=W.detach(), dh=h.grad, dW=W.grad)
            if b is not None:
                files.update(bias=b.detach(), db=b.grad)
            files.update(target=t, loss=loss.detach())
        else:
            x = bf16_exact(torch.randn(n, v, generator=g) * 3).requires_grad_(True)
            z = transform(x, s, cap)
            if op == "cross_entropy":
                loss, lse, zl = ce_loss(z, t, spec, w)
                files.update(lse=lse.detach(), z_loss=zl.detach())
            elif op == "log_probs":
                keep = (t != ii).to(f64)
                lp = torch.log_softmax(z, dim=1).gather(1, torch.where(t == ii, 0, t).unsqueeze(1)).squeeze(1)
                loss = lp * keep
            else:
                p = torch.softmax(z, dim=1)
                loss = -(p * torch.log_softmax(z, dim=1)).sum(dim=1)
            (loss * go).sum().backward()
            files.update(logits=x.detach(), loss=loss.detach(), grad=x.grad)
            if t is not None:
                files["target"] = t
        if w is not None:
            files["weight"] = w
        if go_spec == "rows":
            files["grad_output"] = go
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for key, val in files.items():
            val = val.detach().contiguous()
            descr = "<i8" if val.dtype == torch.int64 else "<f8"
            data = [int(u) for u in val.flatten().tolist()] if descr == "<i8" else [float(u) for u in val.flatten().tolist()]
            write_npy(os.path.join(d, key + ".npy"), data, list(val.shape), descr)
        opts = {key: spec[key] for key in CE_OPTS if key in spec}
        if op == "cross_entropy" and "reduction" not in opts:
            opts["reduction"] = "mean"
        if op == "linear_cross_entropy":
            opts.setdefault("reduction", "mean")
        entry = {"name": name, "op": op, "source": source, "opts": opts, "files": sorted(files)}
        if go_spec != "rows":
            entry["grad_output"] = float(go_spec)
        print("%-45s %-22s %s" % (name, op, source))
        return entry

    manifest, failed = [], []
    for k, (name, op, source, spec) in enumerate(build_cases()):
        try:
            manifest.append(one_case(k, name, op, source, spec))
        except Exception:  # report every failing case, not just the first
            traceback.print_exc()
            failed.append(name)
    with open(os.path.join(out, "manifest.lua"), "w") as f:
        f.write("-- Written by scripts/golden_torch.py (PyTorch %s, float64); do not edit.\nreturn {\n" % torch.__version__)
        for entry in manifest:
            f.write("  %s,\n" % lua_value(entry))
        f.write("}\n")
    print("%d cases in %s" % (len(manifest), out))
    if failed:
        raise SystemExit("failed: " + ", ".join(failed))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "specs", "fixtures", "golden"))
    ap.add_argument("--selftest", action="store_true", help="write the loader's test files only (no PyTorch)")
    a = ap.parse_args()
    if a.selftest:
        selftest(a.out)
    else:
        generate(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
