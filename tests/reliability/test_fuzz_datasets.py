"""Never trust a data file: IDX (raw and gzipped), CIFAR-10 binary and python batches.

Every damaged file must load (a flipped pixel is still a valid file) or raise
:class:`fn3.errors.DataError` naming the file; a pickle must never resolve a global outside the
numpy allow-list, so it cannot run code.
"""

from __future__ import annotations

import gzip
import pickle
import pickletools
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fuzz_strategies import FUZZ, corrupted, expect_only
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fn3.data import load_cifar_binary, load_cifar_python, load_dataset, parse_idx, read_idx
from fn3.data.cifar import _allowed_globals, restricted_loads
from fn3.errors import DataError

# -- IDX ------------------------------------------------------------------------------------------


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


IMAGES = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)  # (N, H, W)
LABELS = np.array([0, 1, 2], dtype=np.uint8)  # (N,)
IDX_IMAGES, IDX_LABELS = _idx(IMAGES), _idx(LABELS)


def test_valid_idx_round_trips(tmp_path: Path) -> None:
    """The files the fuzzers damage are valid to start with."""
    assert np.array_equal(parse_idx(IDX_IMAGES), IMAGES)
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(IDX_IMAGES))
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), IMAGES)


@settings(max_examples=300, **FUZZ)
@given(data=st.one_of(corrupted(IDX_IMAGES, header=16), corrupted(IDX_LABELS, header=8)))
# Four dimensions of 65536 elements: 2**64 elements, which wraps to 0 in an int64 product.
@example(data=bytes([0, 0, 8, 4]) + struct.pack(">4I", 65536, 65536, 65536, 65536))
@example(data=bytes([0, 0, 8, 255]) + b"\xff" * 1020)
def test_parse_idx_damaged(data: bytes) -> None:
    out = expect_only(DataError, lambda: parse_idx(data, "fuzz.idx"), names="fuzz.idx")
    if isinstance(out, np.ndarray):  # accepted: the header must describe exactly the payload
        assert out.size * out.itemsize == len(data) - 4 - 4 * data[3]


@settings(max_examples=150, **FUZZ)
@given(
    data=st.one_of(corrupted(gzip.compress(IDX_IMAGES, mtime=0), header=24), st.binary(max_size=64))
)
def test_read_idx_damaged_gzip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("idx") / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b" + data[2:] if len(data) > 2 else data)  # keep the gzip magic
    expect_only(DataError, lambda: read_idx(path), names=path)


@settings(max_examples=60, **FUZZ)
@given(
    images=corrupted(IDX_IMAGES, header=16),
    labels=corrupted(IDX_LABELS, header=8),
    which=st.sampled_from(["images", "labels", "both"]),
)
def test_mnist_directory_damaged(
    tmp_path_factory: pytest.TempPathFactory, images: bytes, labels: bytes, which: str
) -> None:
    """Through the public entry point: damaged IDX files in an MNIST folder."""
    root = tmp_path_factory.mktemp("mnist")
    for split in ("train", "t10k"):
        good_i, good_l = IDX_IMAGES, IDX_LABELS
        (root / f"{split}-images-idx3-ubyte").write_bytes(images if which != "labels" else good_i)
        (root / f"{split}-labels-idx1-ubyte").write_bytes(labels if which != "images" else good_l)
    out = expect_only(DataError, lambda: load_dataset("mnist", "train", root))
    if not isinstance(out, Exception):
        assert int(out.labels.max()) < out.num_classes


# -- CIFAR-10 binary --------------------------------------------------------------------------------

CIFAR_RECORDS = b"".join(bytes([c]) + bytes([c * 20]) * 3072 for c in (3, 7))  # 2 images


@settings(max_examples=80, **FUZZ)
@given(batch=corrupted(CIFAR_RECORDS, header=8), meta=st.none() | st.binary(max_size=200))
def test_cifar_binary_damaged(
    tmp_path_factory: pytest.TempPathFactory, batch: bytes, meta: bytes | None
) -> None:
    root = tmp_path_factory.mktemp("cifar-bin")
    (root / "test_batch.bin").write_bytes(batch)
    if meta is not None:
        (root / "batches.meta.txt").write_bytes(meta)
    out = expect_only(DataError, lambda: load_cifar_binary(root, "test"))
    if not isinstance(out, Exception):
        assert tuple(out.images.shape[1:]) == (3, 32, 32)
        assert int(out.labels.max()) < out.num_classes


# -- CIFAR-10 python (pickles) ----------------------------------------------------------------------


def _py_batch(protocol: int) -> bytes:
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)  # (N, 3072)
    return pickle.dumps({b"data": data, b"labels": [3, 7], b"batch_label": b"test"}, protocol)


PY_BATCHES = [_py_batch(2), _py_batch(4), _py_batch(5)]


def test_valid_python_batch(tmp_path: Path) -> None:
    for blob in PY_BATCHES:
        (tmp_path / "test_batch").write_bytes(blob)
        ds = load_cifar_python(tmp_path, "test")
        assert ds.labels.tolist() == [3, 7]


# One damage that made the old loader (the C unpickler) slow: a flipped byte turns a BINPUT (memo index
# 0..255) into a LONG_BINPUT whose index is read from the next 4 bytes, here 0x4718603, and the C
# unpickler sized its memo array by that index (about 1.2 GB, zeroed). 200 examples take under a second.
@settings(max_examples=200, **FUZZ)
@given(blob=st.one_of(*(corrupted(b, header=128) for b in PY_BATCHES)))
@example(blob=PY_BATCHES[0][:46] + b"r" + PY_BATCHES[0][47:])
def test_cifar_python_damaged(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    root = tmp_path_factory.mktemp("cifar-py")
    (root / "test_batch").write_bytes(blob)
    out = expect_only(DataError, lambda: load_cifar_python(root, "test"))
    if not isinstance(out, Exception):
        assert tuple(out.images.shape[1:]) == (3, 32, 32)


# Every opcode of every protocol, with a small argument of the right kind where it takes one.
_OPS = sorted({op.code.encode("latin-1") for op in pickletools.opcodes})


@st.composite
def _opcode_streams(draw: st.DrawFn) -> bytes:
    out = bytearray(b"\x80" + bytes([draw(st.integers(2, 5))]))  # PROTO n
    for _ in range(draw(st.integers(1, 40))):
        out += draw(st.sampled_from(_OPS))
        out += draw(st.binary(max_size=6))  # argument bytes (lengths, ints, memo keys, names)
        if draw(st.booleans()):
            out += draw(
                st.sampled_from([b"os\nsystem\n", b"builtins\neval\n", b"numpy\nndarray\n"])
            )
    return bytes(out + b".")


@settings(max_examples=300, **FUZZ)
@given(blob=_opcode_streams())
def test_random_pickle_opcodes(blob: bytes) -> None:
    """Random opcode streams (with dangerous global names sprinkled in): DataError or plain data."""
    out = expect_only(DataError, lambda: restricted_loads(blob, "fuzz.pkl"), names="fuzz.pkl")
    allowed = (
        dict,
        list,
        tuple,
        set,
        frozenset,
        bytes,
        bytearray,
        str,
        int,
        float,
        bool,
        complex,
        type(None),
        np.ndarray,
        np.dtype,
        np.generic,
        DataError,
    )
    allowed_globals = _allowed_globals().values()
    assert isinstance(out, allowed) or any(out is g for g in allowed_globals), type(out)


class _Canary:
    """A reduce that would create a file if any unpickler ever ran it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_globals_never_run(tmp_path: Path, protocol: int) -> None:
    """GLOBAL / STACK_GLOBAL of anything outside the allow-list: DataError, and nothing runs."""
    canary = tmp_path / "ran"
    blob = pickle.dumps({b"data": _Canary(canary), b"labels": []}, protocol)
    (tmp_path / "test_batch").write_bytes(blob)
    with pytest.raises(DataError, match="must not"):
        load_cifar_python(tmp_path, "test")
    assert not canary.exists()
    for module, name in [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("subprocess", "Popen"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "eval"),
    ]:
        glob = f"c{module}\n{name}\n(S'touch {canary}'\ntR.".encode()
        with pytest.raises(DataError, match=f"{module}.{name}"):
            restricted_loads(glob, "evil.pkl")
    assert not canary.exists()


def _strided_zeros(shape: tuple[int, ...], dtype: str) -> bytes:
    """Pickle opcodes for ``numpy.ndarray(shape, dtype, 8 zero bytes, 0, strides=0)``: an array of any
    size that reads all its elements from 8 bytes of the file (protocol 0 plus SHORT_BINBYTES)."""
    dims = "".join(f"I{d}\n" for d in shape).encode()
    zeros = b"I0\n" * len(shape)
    dtype_call = f"cnumpy\ndtype\n(S'{dtype}'\ntR".encode()
    args = b"((" + dims + b"t" + dtype_call + b"C\x08" + bytes(8) + b"I0\n(" + zeros + b"tt"
    return b"cnumpy\nndarray\n" + args + b"R"


def test_pickle_cannot_allocate_beyond_its_size(tmp_path: Path) -> None:
    """A 200-byte pickle whose arrays claim 300 MB of pixels and 100,000 labels is rejected.

    The allowed numpy globals can build an array of any shape over a few bytes (zero strides); the
    batch must not hold more pixels than the file has bytes, or a tiny file could exhaust memory.
    """
    n = 100_000
    array, labels = _strided_zeros((n, 3072), "u1"), _strided_zeros((n,), "i8")
    blob = b"(dS'data'\n" + array + b"sS'labels'\n" + labels + b"s."
    assert len(blob) < 300
    (tmp_path / "test_batch").write_bytes(blob)
    with pytest.raises(DataError, match="test_batch"):
        load_cifar_python(tmp_path, "test")


# -- crafted pickles: cheap to reject, whatever they claim ------------------------------------------


def _doubling(levels: int) -> bytes:
    """Protocol-4 opcodes leaving t_levels on the stack, where t_0 = () and t_i = (t_(i-1), t_(i-1))
    through the memo: 9 bytes a level, and hashing t_levels takes 2**levels steps."""
    out = bytearray(b")\x940")  # EMPTY_TUPLE, MEMOIZE (as 0), POP
    for i in range(levels):
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86\x940"  # BINGET i twice, TUPLE2, MEMOIZE, POP
    return bytes(out + b"h" + bytes([levels]))


def _array_ops(raw_memo: int, build_twice: bool = False) -> bytes:
    """Protocol-4 opcodes for a (1, len) uint8 array whose bytes are the memo's entry ``raw_memo``."""
    state = (
        b"(K\x01K\x01M\x00\x0c\x86\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02u1\x89\x88\x87R"
        b"(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h" + bytes([raw_memo]) + b"t"
    )
    return (
        b"\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93\x8c\x05numpy\x8c\x07ndarray\x93"
        b"K\x00\x85C\x01b\x87R\x94" + state + b"b" + (b"\x94" + state + b"b" if build_twice else b"")
    )


_RAW = b"B" + struct.pack("<I", 3072) + bytes(3072) + b"\x94"  # BINBYTES, memo 0
_P4 = b"\x80\x04"
BOMBS: dict[str, tuple[bytes, str | None]] = {
    # name: (pickle, a part of the DataError message, or None if it loads as plain data)
    "memo index 0x10000000": (b"\x80\x02K\x01r\x00\x00\x00\x10.", None),  # 4 GB in the C memo
    "dict key hashed 2**60 times": (_P4 + b"}" + _doubling(60) + b"K\x01s.", "dict key"),
    "one stored array read 300 times": (_P4 + _RAW + b"](" + _array_ops(0) * 300 + b"e.", "twice"),
    "array state set twice": (_P4 + _RAW + _array_ops(0, build_twice=True) + b".", "once"),
    "bytearray of 4 GB declared": (b"\x80\x05\x96" + struct.pack("<Q", 1 << 32) + b"xx.", "bytearray"),
    "a million opcodes": (b"\x80\x02" + b"N0" * 500_000 + b"N.", "opcodes"),
    "a million marks": (b"\x80\x02" + b"(" * 1_000_000 + b"N.", "opcodes"),
    "10,000-digit LONG": (b"L" + b"9" * 10_000 + b"L\n.", "digits"),
    "object array": (pickle.dumps(np.array([None, 1], dtype=object), 4), "not a number type"),
    "structured array": (pickle.dumps(np.zeros(2, dtype="u1,f4"), 2), "number type"),
    "codec other than latin1": (
        b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x08\x00\x00\x00punycode\x86R.",
        "latin1",
    ),
    "a set": (pickle.dumps({1, 2}, 4), "EMPTY_SET"),
    "NEWOBJ": (b"\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93K\x00\x85\x81.", "NEWOBJ"),
}


@pytest.mark.parametrize("name", BOMBS)
def test_crafted_pickles_are_cheap(name: str) -> None:
    """Each crafted pickle fails with a DataError (or loads as plain data) within seconds and
    with memory of at most a small multiple of its size: no memo, hash, copy or array sized by a number
    the file merely claims."""
    blob, message = BOMBS[name]
    out = _bounded(lambda: restricted_loads(blob, "bomb.pkl"), len(blob))
    if message is None:
        assert not isinstance(out, Exception), out
    else:
        assert isinstance(out, DataError) and message in str(out), out


def _bounded(load: Callable[[], object], size: int) -> object:
    """``expect_only(DataError, load)`` within 10 s (a quadratic parse of a million marks takes hours; the
    bound leaves room for tracemalloc on a loaded machine) and (traced) memory of 10x ``size`` + 1 MB."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        out = expect_only(DataError, load, seconds=10.0)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert peak <= 10 * size + 2**20, f"{peak} bytes traced for a {size}-byte pickle"
    return out


def test_damaged_array_dtype_flags_are_ignored() -> None:
    """A dtype's state carries flags numpy trusts (0x1f: "holds Python objects"); a flipped flags byte
    must not make numpy read uint8 pixels as object pointers. The loader takes only the byte order."""
    blob = pickle.dumps(np.arange(6, dtype=np.uint8), 4)
    damaged = blob.replace(b"\xff\xff\xff\xffK\x00t", b"\xff\xff\xff\xffK\x1ft")
    assert damaged != blob
    out = restricted_loads(damaged, "flags.pkl")
    assert out.tolist() == list(range(6)) and out.dtype == np.uint8 and not out.dtype.hasobject


def test_cifar_labels_and_names_nested_through_the_memo(tmp_path: Path) -> None:
    """Labels or class names that are lists nested 60 deep through the memo (a few hundred bytes):
    numpy's conversion or a repr would take 2**60 steps; the loader rejects them by type first."""
    nested: list = []
    for _ in range(60):
        nested = [nested, nested]
    images = np.zeros((2, 3072), np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": images, b"labels": [nested] * 2}))
    out = _bounded(lambda: load_cifar_python(tmp_path, "test"), 8000)
    assert isinstance(out, DataError) and "label that is a list" in str(out), out
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": images, b"labels": [1, 2]}))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [nested] * 10}))
    out = _bounded(lambda: load_cifar_python(tmp_path, "test"), 8000)
    assert isinstance(out, DataError) and "batches.meta has label_names" in str(out), out
