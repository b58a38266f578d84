"""CIFAR-10 binary and python batches written by the tests, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fn3.data import CIFAR10_CLASSES, load_cifar_binary, load_cifar_python, load_dataset
from fn3.data.cifar import restricted_loads
from fn3.errors import DataError

SIZES = {"data_batch_1": 3, "data_batch_2": 2, "data_batch_3": 4, "data_batch_4": 1}
SIZES |= {"data_batch_5": 2, "test_batch": 5}


def make_batches(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random batches: name -> (images uint8 (n, 3, 32, 32), labels int (n,))."""
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, size=n),
        )
        for name, n in SIZES.items()
    }


def write_binary(directory: Path, batches: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in batches.items():
        records = np.concatenate(
            [labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1
        )  # (n, 3073)
        (directory / f"{name}.bin").write_bytes(records.tobytes())
    (directory / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")


def write_python(directory: Path, batches: dict, protocol: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in batches.items():
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels],
            b"data": images.reshape(len(images), -1),  # (n, 3072)
            b"filenames": [f"{i}.png".encode() for i in range(len(images))],
        }
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))


def py2_pickle(obj: object) -> bytes:
    """``obj`` pickled as Python 2's cPickle (protocol 2) with numpy 1.x wrote the official
    ``cifar-10-batches-py`` files: ``str`` as (SHORT_)BINSTRING, which Python 3 reads as bytes with
    ``encoding="bytes"``; arrays as ``numpy.core.multiarray._reconstruct`` + BUILD, the dtype's
    arguments as ints ``(0, 1)``; memo indices from 1, LONG_BINPUT past 255. Handles the types a
    CIFAR batch holds: dict, list, int, bytes, and C-contiguous number arrays."""
    out = bytearray(b"\x80\x02")
    memo = [0]

    def put() -> None:
        memo[0] += 1
        out.extend(b"q" + bytes([memo[0]]) if memo[0] < 256 else b"r" + struct.pack("<I", memo[0]))

    def save(x: object) -> None:
        if isinstance(x, int):
            out.extend(b"K" + bytes([x]) if 0 <= x < 256 else b"J" + struct.pack("<i", x))
        elif isinstance(x, bytes):
            out.extend((b"U" + bytes([len(x)]) if len(x) < 256 else b"T" + struct.pack("<i", len(x))) + x)
            put()
        elif isinstance(x, list):
            out.extend(b"]")
            put()
            for start in range(0, len(x), 1000):  # cPickle batched APPENDS by 1000
                out.extend(b"(")
                for v in x[start : start + 1000]:
                    save(v)
                out.extend(b"e")
        elif isinstance(x, dict):
            out.extend(b"}")
            put()
            out.extend(b"(")
            for k, v in x.items():
                save(k)
                save(v)
            out.extend(b"u")
        elif isinstance(x, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\n")
            put()
            out.extend(b"cnumpy\nndarray\n")
            put()
            out.extend(b"K\x00\x85U\x01b\x87R")  # (ndarray, (0,), 'b')
            put()
            out.extend(b"(K\x01(" + b"".join(b"J" + struct.pack("<i", d) for d in x.shape) + b"t")
            out.extend(b"cnumpy\ndtype\n")
            put()
            code, order = x.dtype.str[1:].encode(), x.dtype.str[:1].encode()
            out.extend(b"U" + bytes([len(code)]) + code + b"K\x00K\x01\x87R")
            put()
            out.extend(b"(K\x03U\x01" + order + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
            save(x.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(x))

    save(obj)
    return bytes(out + b".")


def write_python2(directory: Path, batches: dict) -> None:
    """The official layout, as Python 2 wrote it (see :func:`py2_pickle`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in batches.items():
        batch = {
            b"batch_label": f"testing batch 1 of 1 ({name})".encode(),
            b"labels": [int(v) for v in labels],
            b"data": images.reshape(len(images), -1),  # (n, 3072)
            b"filenames": [f"leptodactylus_pentadactylus_s_{i:06d}.png".encode() for i in range(len(images))],
        }
        (directory / name).write_bytes(py2_pickle(batch))
    meta = {b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
    (directory / "batches.meta").write_bytes(py2_pickle(meta | {b"num_vis": 3072}))


def expected(batches: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images = torch.from_numpy(np.concatenate([batches[n][0] for n in names]))
    labels = torch.from_numpy(np.concatenate([batches[n][1] for n in names]).astype(np.int64))
    return images, labels


@pytest.mark.parametrize("split", ["train", "test"])
def test_binary_roundtrip(tmp_path: Path, split: str) -> None:
    batches = make_batches()
    write_binary(tmp_path / "cifar-10-batches-bin", batches)
    ds = load_dataset("cifar10", split, tmp_path)  # found in the official subfolder
    images, labels = expected(batches, split)
    assert ds.images.shape == (len(labels), 3, 32, 32)
    assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
    assert ds.classes == CIFAR10_CLASSES and ds.name == f"cifar10/{split}"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python_roundtrip(tmp_path: Path, protocol: int) -> None:
    batches = make_batches(1)
    write_python(tmp_path / "cifar-10-batches-py", batches, protocol)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, tmp_path)
        images, labels = expected(batches, split)
        assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
        assert ds.classes == CIFAR10_CLASSES


def test_python2_written_batches(tmp_path: Path) -> None:
    """The real cifar-10-batches-py files come from Python 2: bytes keys, numpy.core, int dtype args."""
    batches = make_batches(2)
    write_python2(tmp_path / "cifar-10-batches-py", batches)
    blob = (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
    reference = pickle.loads(blob, encoding="bytes")  # the writer makes what pickle itself reads
    assert np.array_equal(restricted_loads(blob)[b"data"], reference[b"data"])
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, tmp_path)
        images, labels = expected(batches, split)
        assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
        assert ds.classes == CIFAR10_CLASSES


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_number_arrays_round_trip(protocol: int) -> None:
    """Every plain number dtype, byte order and memory order numpy pickles, empty and 0-d arrays."""
    rng = np.random.default_rng(3)
    arrays = [
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(rng.normal(size=(3, 5))),  # float64, Fortran order
        rng.normal(size=4).astype("<f2"),
        (rng.normal(size=3) + 1j).astype(np.complex128),
        np.array([True, False]),
        np.zeros((0, 3072), np.uint8),
        np.array(7, dtype=np.uint64),  # 0-d
    ]
    blob = pickle.dumps({"arrays": arrays, "same": [arrays[0], arrays[0]]}, protocol)
    out = restricted_loads(blob)
    reference = pickle.loads(blob)  # numpy itself makes '>i4' native, except with protocol 5
    for got, want in zip(out["arrays"], reference["arrays"], strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        assert got.flags.f_contiguous == want.flags.f_contiguous
    assert all(np.array_equal(got, want) for got, want in zip(out["arrays"], arrays, strict=True))
    assert out["same"][0] is out["same"][1]  # the memo keeps shared references shared


def test_python_str_keys_are_accepted(tmp_path: Path) -> None:
    images = np.zeros((2, 3072), np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": images, "labels": [1, 2]}))
    ds = load_cifar_python(tmp_path, "test")
    assert ds.labels.tolist() == [1, 2] and ds.classes == CIFAR10_CLASSES


class _Exploit:
    """Runs ``touch <marker>`` when unpickled by an unrestricted unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_rejected_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Exploit(marker)]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"references the global (posix|os|nt)\.system") as info:
        load_cifar_python(tmp_path, "test")
    assert str(tmp_path / "test_batch") in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval),  # builtins.eval
        b"cbuiltins\nexec\n(S'import os'\ntR.",  # a hand-written GLOBAL + REDUCE
        pickle.dumps(np.random.default_rng),  # a numpy global outside the allow-list
    ],
)
def test_other_globals_are_rejected(payload: bytes) -> None:
    with pytest.raises(DataError, match="references the global"):
        restricted_loads(payload, "evil.pkl")


def test_garbage_pickle_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a valid pickle"):
        restricted_loads(b"\x80\x02}q\x00(", "cut.pkl")


def test_python_batch_validation(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    cases = [
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels in 0\.\.10"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1]}, "integers"),
        ({b"labels": [0, 1]}, "no 'data' entry"),
        ([1, 2, 3], "expected a dict"),
    ]
    for content, pattern in cases:
        path.write_bytes(pickle.dumps(content, protocol=2))
        with pytest.raises(DataError, match=pattern):
            load_cifar_python(tmp_path, "test")


def test_binary_validation(tmp_path: Path) -> None:
    record = bytes([1]) + bytes(3072)
    (tmp_path / "test_batch.bin").write_bytes(record * 2 + record[:100])
    with pytest.raises(DataError, match="multiple of 3073"):
        load_cifar_binary(tmp_path, "test")
    (tmp_path / "test_batch.bin").write_bytes(record + bytes([12]) + bytes(3072))
    with pytest.raises(DataError, match=r"labels in 1\.\.12; expected 0\.\.9"):
        load_cifar_binary(tmp_path, "test")


def test_missing_train_batch_is_named(tmp_path: Path) -> None:
    write_binary(tmp_path, make_batches())
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3.bin"):
        load_dataset("cifar10", "train", tmp_path)


def test_no_cifar_anywhere(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CIFAR-10 in .*cifar-10-batches-bin"):
        load_dataset("cifar10", "train", tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="expected it extracted: tar xzf"):
        load_dataset("cifar10", "train", tmp_path)
