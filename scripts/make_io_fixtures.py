#!/usr/bin/env python3
"""Writes the small .npy and .safetensors files under specs/fixtures/io/ that
specs/io_spec.lua reads: files produced by NumPy itself (and by the
safetensors package when it is installed), so the loaders are checked against
the real producers, not only against our own writer. The files are committed;
the specs need neither NumPy nor this script.

    python3 scripts/make_io_fixtures.py [outdir]    (default specs/fixtures/io)

Needs numpy. ml_dtypes and safetensors are optional: without ml_dtypes the
bf16 files are written from raw uint16 bit patterns (byte-identical to what
np.save writes for ml_dtypes.bfloat16); without safetensors the .safetensors
files are written by the small writer below. The expected values are
repeated in specs/io_spec.lua; change both together.
"""
import json
import os
import struct
import sys

import numpy as np

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

try:
    import safetensors.numpy as st_numpy
except ImportError:
    st_numpy = None

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "specs", "fixtures", "io")

# bf16 bit patterns: 1, -2, inf, -inf, a quiet NaN with a payload, the
# smallest subnormal, -0, the largest finite value.
BF16_BITS = [0x3F80, 0xC000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x8000, 0x7F7F]


def path(name):
    return os.path.join(OUT, name)


def bf16_array():
    bits = np.array(BF16_BITS, dtype="<u2")
    if ml_dtypes is not None:
        return bits.view(ml_dtypes.bfloat16)
    return bits.view("V2")


def write_with_descr(name, descr, arr, version=(1, 0)):
    """np.save with the header's descr replaced (for types NumPy has no code for)."""
    header = {"descr": descr, "fortran_order": False, "shape": arr.shape}
    with open(path(name), "wb") as f:
        if version == (1, 0):
            np.lib.format.write_array_header_1_0(f, header)
        else:
            np.lib.format.write_array_header_2_0(f, header)
        f.write(np.ascontiguousarray(arr).tobytes())


def npy_fixtures():
    np.save(path("np_f64_2x3.npy"), np.arange(6, dtype=np.float64).reshape(2, 3) * 0.5 - 1.0)
    np.save(path("np_f32_specials.npy"),
            np.array([0.0, -0.0, 1.5, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38], dtype=np.float32))
    np.save(path("np_f16_2x2.npy"), np.array([[1.0, -2.5], [65504.0, 2.0 ** -24]], dtype=np.float16))
    np.save(path("np_i32.npy"), np.array([-2 ** 31, -1, 0, 2 ** 31 - 1], dtype=np.int32))
    np.save(path("np_i64_2x2.npy"), np.array([[-2 ** 62, 2 ** 53 + 1], [0, 7]], dtype=np.int64))
    np.save(path("np_f32_scalar.npy"), np.float32(2.5))
    np.save(path("np_f32_0x3.npy"), np.zeros((0, 3), dtype=np.float32))
    # What np.save writes for ml_dtypes.bfloat16: descr '<V2'.
    np.save(path("np_bf16_v2.npy"), bf16_array())
    # What tools write when they store str(dtype): descr 'bfloat16'.
    write_with_descr("np_bf16_descr.npy", "bfloat16", np.array(BF16_BITS, dtype="<u2"))
    np.save(path("np_f32_fortran_2x3.npy"), np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    np.save(path("np_f32_big_endian_2x3.npy"), np.arange(6, dtype=">f4").reshape(2, 3))
    np.lib.format.write_array(open(path("np_f32_v2.npy"), "wb"), np.array([1.0, 2.0, 3.0], dtype=np.float32),
                              version=(2, 0))
    np.save(path("np_f64_3d.npy"), np.zeros((2, 2, 2)))
    np.save(path("np_u8.npy"), np.array([1, 2, 3], dtype=np.uint8))
    np.save(path("np_structured.npy"), np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))


ST_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "int32": "I32", "int64": "I64",
            "uint8": "U8", "bfloat16": "BF16"}


def write_safetensors(name, tensors, metadata=None, codes=None):
    """The format: u64 little-endian header size, JSON header, data. codes
    overrides the dtype code of some tensors (raw uint16 bits stored as BF16)."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        raw = arr.tobytes()
        code = (codes or {}).get(key) or ST_CODES[str(arr.dtype)]
        header[key] = {"dtype": code, "shape": list(arr.shape),
                       "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path(name), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def save_st(name, tensors, metadata=None):
    if st_numpy is not None:
        st_numpy.save_file(tensors, path(name), metadata=metadata)
    else:
        write_safetensors(name, tensors, metadata)


def safetensors_fixtures():
    tensors = {
        "f64": np.arange(6, dtype=np.float64).reshape(2, 3) * 0.5 - 1.0,
        "f32": np.array([0.0, -0.0, 1.5, np.inf, -np.inf, np.nan], dtype=np.float32),
        "f16": np.array([[1.0, -2.5], [65504.0, 2.0 ** -24]], dtype=np.float16),
        "i32": np.array([-2 ** 31, -1, 0, 2 ** 31 - 1], dtype=np.int32),
        "i64": np.array([[-2 ** 62, 2 ** 53 + 1], [0, 7]], dtype=np.int64),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    if ml_dtypes is not None:
        tensors["bf16"] = bf16_array()
        save_st("st_all.safetensors", tensors, metadata={"format": "np", "made_by": "make_io_fixtures.py"})
    else:
        # No bfloat16 type to hand: the hand writer stores the raw bits as BF16.
        tensors["bf16"] = np.array(BF16_BITS, dtype="<u2")
        write_safetensors("st_all.safetensors", tensors, metadata={"format": "np", "made_by": "make_io_fixtures.py"},
                          codes={"bf16": "BF16"})
    save_st("st_u8.safetensors", {"ok": np.ones(2, dtype=np.float32), "bytes": np.arange(4, dtype=np.uint8)})
    save_st("st_3d.safetensors", {"cube": np.zeros((2, 2, 2), dtype=np.float32)})


def main():
    os.makedirs(OUT, exist_ok=True)
    npy_fixtures()
    safetensors_fixtures()
    print("wrote fixtures to", os.path.normpath(OUT),
          "(ml_dtypes %s, safetensors %s)" % ("yes" if ml_dtypes else "no", "yes" if st_numpy else "no"))


if __name__ == "__main__":
    main()
