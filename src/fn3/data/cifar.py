"""CIFAR-10 in its two official formats: binary batches and (safely unpickled) python batches.

*Binary* (``cifar-10-batches-bin/``): ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
``test_batch.bin``, each a sequence of 3073-byte records: 1 label byte, then the 32x32 image as
1024 red, 1024 green and 1024 blue bytes; ``batches.meta.txt`` lists the class names.

*Python* (``cifar-10-batches-py/``): ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` are
pickled dicts with ``b"data"`` (a uint8 array of shape ``(N, 3072)``) and ``b"labels"`` (a list of
ints); ``batches.meta`` holds ``b"label_names"``. A pickle can run arbitrary code when loaded, and
a damaged or crafted one can make an ordinary unpickler allocate gigabytes or run for hours, so
these files are read only through :class:`RestrictedUnpickler`: it rebuilds nothing but containers,
strings, numbers and numpy number arrays whose bytes are in the file, in time linear in the file's
size, and raises :class:`~fn3.errors.DataError` for anything else.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from fn3.data.cifar import load_cifar_binary
    >>> root = Path(tempfile.mkdtemp())
    >>> record = bytes([3]) + bytes(3072)  # one black image of class 3 ("cat")
    >>> _ = (root / "test_batch.bin").write_bytes(record * 2)
    >>> ds = load_cifar_binary(root, "test")
    >>> tuple(ds.images.shape), ds.labels.tolist(), ds.classes[3]
    ((2, 3, 32, 32), [3, 3], 'cat')
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fn3._io import one_line
from fn3.data.dataset import ImageDataset
from fn3.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "RestrictedUnpickler",
    "load_cifar_binary",
    "load_cifar_python",
    "restricted_loads",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_IMAGE_BYTES = 3 * 32 * 32  # 3072: one image, channel-major (R plane, G plane, B plane)
_RECORD_BYTES = 1 + _IMAGE_BYTES  # 3073: label byte + image
_BATCH_STEMS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


# -- the restricted unpickler ------------------------------------------------------------------------
#
# Why not pickle.Unpickler with an allow-list in find_class (what this module did first)? That stops
# code from running, but the C unpickler still trusts the rest of the file: its memo is an array
# sized by the largest index a PUT names (a 10-byte pickle with LONG_BINPUT 0x10000000 allocates and
# zeroes 4 GB, for 13 s), SETITEM hashes keys that may be tuples nested through the memo (hashing 60
# levels of (t, t) takes 2**60 steps), numpy's dtype and ndarray __setstate__ believe the state they
# get (one flipped flags byte makes numpy treat uint8 pixels as object pointers), and numpy.ndarray
# itself makes an array of any size over 8 bytes (zero strides). Only find_class can be overridden
# in the C unpickler, so RestrictedUnpickler runs pickle's pure-Python one (pickle._Unpickler, the
# same code the C module replaces) with its table of opcode handlers cut down and a few handlers
# replaced; see its docstring. A separate pre-scan with pickletools.genops would add nothing: the
# table refuses the same opcodes before running them, and the one handler that allocates a declared
# length up front (BYTEARRAY8) is replaced; genops would also reject valid Python 2 protocol-0 files
# (it decodes their STRING arguments as ASCII).


class _Refused(Exception):
    """A well-formed pickle that does something no data file needs; the message says what."""


_NUMERIC_DTYPE = re.compile(r"[<>|=]?[biufc](1|2|4|8|16)")  # 'u1', '<f8', ...: bool, int, float, complex
_MAX_NDIM = 32
_MAX_DIM = 1 << 40  # longer than any real axis; keeps the size arithmetic small
_MAX_KEY_LEN = 256  # dict keys are names: short, so hashing and comparing them is cheap
_KEY_TYPES = (str, bytes, int, float, bool, type(None))
# Opcodes kept as pickle implements them: each costs time linear in its argument, makes at most one
# object, and calls nothing (GLOBAL and STACK_GLOBAL go through find_class).
_KEPT_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE", "NEWFALSE",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "LIST",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET", "GLOBAL", "STACK_GLOBAL",
})
# Every other opcode is refused: INST, OBJ, NEWOBJ, NEWOBJ_EX (call a class), EXT1/2/4 (the copyreg
# registry), PERSID, BINPERSID, NEXT_BUFFER, READONLY_BUFFER (objects from outside the file),
# EMPTY_SET, ADDITEMS, FROZENSET (hash their items; no data file needs a set).
_OPCODE_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


def _describe(value: object) -> str:
    """A short description of an untrusted value for an error message, never its full ``repr``: a
    list nested through the memo prints in exponential time, and a 5,000-digit int does not print."""
    if isinstance(value, str | bytes):
        return repr(value[:24]) + ("..." if len(value) > 24 else "")
    if type(value) is int and value.bit_length() <= 64:
        return str(value)
    if isinstance(value, tuple | list | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _text(value: object, what: str) -> str:
    """``value`` as ``str``; Python 2 pickles (read with ``encoding="bytes"``) hold ``bytes``."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if type(value) is not str:
        raise _Refused(f"{what} is {_describe(value)}; expected a string")
    return value


def _flag(value: object, what: str) -> bool:
    if type(value) not in (bool, int) or value not in (0, 1):
        raise _Refused(f"{what} is {_describe(value)}; expected True or False")
    return bool(value)


def _shape(value: object) -> tuple[int, ...]:
    if (
        type(value) is not tuple
        or len(value) > _MAX_NDIM
        or not all(type(d) is int and 0 <= d < _MAX_DIM for d in value)
    ):
        raise _Refused(f"an array shape is {_describe(value)}; expected a tuple of sizes")
    return value


def _numeric_dtype(value: object) -> np.dtype:
    """``value`` if it is a plain number dtype, rebuilt from its type string (so nothing a pickle
    did to the object reaches numpy)."""
    if not isinstance(value, np.dtype) or not _NUMERIC_DTYPE.fullmatch(value.str):
        raise _Refused(f"an array's dtype is {_describe(value)}; expected a number type such as uint8")
    return np.dtype(value.str)


def _check_size(shape: tuple[int, ...], dtype: np.dtype, stored: int) -> None:
    needed = math.prod(shape) * dtype.itemsize
    if needed != stored:
        raise _Refused(
            f"an array of shape {shape} and dtype {dtype} needs {needed} bytes but {stored} are stored;"
            " expected the array's bytes in the file"
        )


# The callables a pickle may name (through find_class) and call (REDUCE). Each takes what numpy or
# Python writes into a pickle, checks it, and makes no more than the data the pickle itself holds.


def _dtype(code: object, align: object = False, copy: object = False) -> np.dtype:
    """``numpy.dtype(code, align, copy)`` for number types (``'u1'``, ``'<f8'``, ...) only."""
    name = _text(code, "a dtype")
    _flag(align, "a dtype's align")
    _flag(copy, "a dtype's copy")
    if not _NUMERIC_DTYPE.fullmatch(name):
        raise _Refused(f"the dtype {_describe(code)} is not a number type; expected e.g. 'u1' or 'f8'")
    return np.dtype(name, False, True)  # a copy: its BUILD must not touch numpy's shared dtype


def _reconstruct(subtype: object, shape: object, typecode: object) -> np.ndarray:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that a BUILD then fills."""
    if subtype is not np.ndarray:
        raise _Refused(f"_reconstruct is asked for {_describe(subtype)}; expected numpy.ndarray")
    _shape(shape)
    _text(typecode, "_reconstruct's type code")
    return np.empty(0, np.int8)


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """numpy's ``_frombuffer(buffer, dtype, shape, order)`` (arrays pickled with protocol 5)."""
    if not isinstance(buffer, bytes | bytearray):
        raise _Refused(f"_frombuffer is given {_describe(buffer)}; expected the array's bytes")
    array_dtype, dims, layout = _numeric_dtype(dtype), _shape(shape), _text(order, "an array order")
    if layout not in ("C", "F"):
        raise _Refused(f"an array order is {_describe(order)}; expected 'C' or 'F'")
    _check_size(dims, array_dtype, len(buffer))
    return np.frombuffer(buffer, dtype=array_dtype).reshape(dims, order=layout)


def _encode(text: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
    """``_codecs.encode(text, "latin1")``: how Python 3 pickles ``bytes`` for protocols 0 to 2."""
    if (
        type(text) is not str
        or type(encoding) is not str
        or encoding not in ("latin1", "latin-1")
        or type(errors) is not str
        or errors != "strict"
    ):
        raise _Refused(
            f"_codecs.encode is called with {_describe(text)}, {_describe(encoding)};"
            " expected a string and 'latin1'"
        )
    return text.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    """``bytes()``: how Python 3 pickles ``b""`` (e.g. an empty array's data) for protocols 0 to 2."""
    if args:
        raise _Refused(f"bytes is called with {len(args)} arguments; expected none (b'')")
    return b""


def _set_dtype_state(dtype: np.dtype, state: object) -> None:
    """BUILD of a dtype from ``_dtype``. numpy's state is ``(3, byteorder, subarray, names, fields,
    elsize, alignment, flags)`` (version 4 adds metadata); a number type needs only the byte order,
    so the rest is checked to be empty or ignored, and numpy gets the state of a dtype it made."""
    if (
        type(state) is not tuple
        or len(state) not in (8, 9)
        or type(state[0]) is not int
        or state[0] not in (3, 4)
        or any(part is not None for part in state[2:5])
    ):
        raise _Refused(f"a dtype's state is {_describe(state)}; expected that of a number type")
    order = _text(state[1], "a dtype's byte order")
    if order not in ("<", ">", "|", "="):
        raise _Refused(f"a dtype's byte order is {_describe(order)}; expected '<', '>', '|' or '='")
    wanted = np.dtype(dtype.str).newbyteorder(order)  # '|' keeps the order
    if wanted != dtype:
        dtype.__setstate__(wanted.__reduce__()[2])


def _set_array_state(array: np.ndarray, state: object) -> None:
    """BUILD of an array from ``_reconstruct``: numpy's state ``(1, shape, dtype, is_fortran, data)``
    (or the same without the version), accepted once ``data`` holds exactly shape x itemsize bytes."""
    if type(state) is not tuple or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
        raise _Refused(f"an array's state is {_describe(state)}; expected (1, shape, dtype, order, data)")
    shape, dtype, fortran, data = state[-4:]
    dims, array_dtype, is_fortran = _shape(shape), _numeric_dtype(dtype), _flag(fortran, "is_fortran")
    if not isinstance(data, bytes | bytearray):
        raise _Refused(f"an array's data is {_describe(data)}; expected bytes")
    _check_size(dims, array_dtype, len(data))
    array.__setstate__((1, dims, array_dtype, is_fortran, bytes(data)))


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What ``find_class`` returns for each (module, name) a data pickle may name."""
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,  # only as _reconstruct's first argument: never called
        ("numpy", "dtype"): _dtype,
        # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): _encode,
        ("__builtin__", "bytes"): _empty_bytes,  # the name protocols 0-2 use for builtins
        ("builtins", "bytes"): _empty_bytes,
    }
    for core in ("numpy.core", "numpy._core"):  # numpy 2 renamed numpy.core; old files use it
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()
_CALLABLE = (_dtype, _reconstruct, _frombuffer, _encode, _empty_bytes)


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler for data files: plain containers, strings, numbers and numpy number arrays.

    Threat model: the file may be damaged or crafted. Whatever it holds, loading runs no code but
    the checked constructors below, takes time linear in the file's size, and holds memory at most a
    small multiple of it; everything else raises :class:`~fn3.errors.DataError` (from
    :func:`restricted_loads`). How:

    - ``find_class`` resolves an allow-list only (``numpy.ndarray``, ``numpy.dtype``, numpy's
      ``_reconstruct`` and ``_frombuffer``, ``_codecs.encode``, ``bytes``), to checked replacements
      rather than the real functions, and never imports anything; other globals raise ``DataError``.
    - The opcode table is pickle's pure-Python one minus every opcode that calls a class, reads an
      object from outside the file or makes a set (see ``_KEPT_OPCODES``). REDUCE calls only the
      checked constructors; BUILD only fills a dtype or an empty array one of them just made, with a
      state checked first (a dtype's byte order; an array's shape x itemsize equal to the bytes it
      carries), so numpy is never handed a state it did not write itself; APPEND(S) only appends to
      lists; SETITEM(S) and DICT only fill dicts, with short string or number keys (hashing them is
      cheap); BYTEARRAY8 may not declare more bytes than the file has.
    - Arrays and encoded strings together may hold at most twice the file's size plus 64 KiB (a
      pickle can reuse one stored string for many arrays through its memo), and a file runs at most
      100,000 opcodes plus one per 256 bytes (a CIFAR batch runs about 50,000 for 30 MB), which
      bounds the time and the small objects the opcodes make.
    """

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>") -> None:
        data = file.read()
        # encoding="bytes": the official CIFAR pickles were written by Python 2 (str -> bytes).
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.source = source
        self._size = len(data)
        self._budget = 2 * len(data) + 65536  # bytes of arrays and encoded strings still allowed
        self._opcodes_left = 100_000 + len(data) // 256
        self._unbuilt: dict[int, Any] = {}  # id -> dtype or array just made, waiting for its BUILD

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source} references the global {one_line(f'{module}.{name}')}, which a data"
                " file must not use; expected only numpy arrays, lists, dicts, numbers and strings"
            ) from None

    def _charge(self, made: object) -> None:
        if isinstance(made, np.ndarray):
            self._budget -= made.nbytes
        elif isinstance(made, bytes | bytearray):
            self._budget -= len(made)
        if self._budget < 0:
            raise _Refused(
                f"its arrays and strings hold more than twice its {self._size} bytes;"
                " expected each array's bytes to be stored once in the file"
            )

    # Replaced opcode handlers (pickle.py's stack machine: self.stack, self.pop_mark()).

    def _op_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not any(func is allowed for allowed in _CALLABLE):
            what = "numpy.ndarray directly" if func is np.ndarray else _describe(func)
            raise _Refused(f"it calls {what}; expected calls of numpy's array and dtype constructors only")
        if type(args) is not tuple:
            raise _Refused(f"it calls a constructor with {_describe(args)}; expected a tuple")
        made = func(*args)
        self._charge(made)
        if func is _dtype or func is _reconstruct:
            self._unbuilt[id(made)] = made
        self.stack[-1] = made

    def _op_build(self) -> None:
        state = self.stack.pop()
        made = self.stack[-1]
        if self._unbuilt.pop(id(made), None) is not made:
            raise _Refused(
                f"it sets the state of {_describe(made)}; expected only a dtype or an array just made"
                " by its constructor to get one, once"
            )
        if isinstance(made, np.dtype):
            _set_dtype_state(made, state)
        else:
            _set_array_state(made, state)
            self._charge(made)

    def _list(self) -> list:
        target = self.stack[-1]
        if type(target) is not list:
            raise _Refused(f"it appends to {_describe(target)}; expected a list")
        return target

    def _op_append(self) -> None:
        value = self.stack.pop()
        self._list().append(value)

    def _op_appends(self) -> None:
        items = self.pop_mark()
        self._list().extend(items)

    @staticmethod
    def _pairs(items: list) -> list[tuple[Any, Any]]:
        if len(items) % 2:
            raise pickle.UnpicklingError(f"{len(items)} items for a dict; expected key, value pairs")
        pairs = list(zip(items[::2], items[1::2], strict=True))
        for key, _ in pairs:
            if (
                type(key) not in _KEY_TYPES
                or (type(key) is int and key.bit_length() > 64)
                or (isinstance(key, str | bytes) and len(key) > _MAX_KEY_LEN)
            ):
                raise _Refused(f"a dict key is {_describe(key)}; expected a short string or a number")
        return pairs

    def _dict(self) -> dict:
        target = self.stack[-1]
        if type(target) is not dict:
            raise _Refused(f"it sets an item of {_describe(target)}; expected a dict")
        return target

    def _op_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._dict().update(self._pairs([key, value]))

    def _op_setitems(self) -> None:
        items = self.pop_mark()
        self._dict().update(self._pairs(items))

    def _op_dict(self) -> None:
        items = self.pop_mark()  # first: pop_mark rebinds self.append to the outer stack
        self.append(dict(self._pairs(items)))

    def _op_bytearray8(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self._size:  # pickle.py would allocate the declared size before reading
            raise pickle.UnpicklingError(f"a bytearray of {size} bytes declared in a {self._size}-byte file")
        data = self.read(size)
        if len(data) != size:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))


def _opcode_table() -> dict[int, Any]:
    """RestrictedUnpickler's ``dispatch``: opcode byte -> handler, for all 256 byte values."""
    replaced = {
        "REDUCE": RestrictedUnpickler._op_reduce,
        "BUILD": RestrictedUnpickler._op_build,
        "APPEND": RestrictedUnpickler._op_append,
        "APPENDS": RestrictedUnpickler._op_appends,
        "SETITEM": RestrictedUnpickler._op_setitem,
        "SETITEMS": RestrictedUnpickler._op_setitems,
        "DICT": RestrictedUnpickler._op_dict,
        "BYTEARRAY8": RestrictedUnpickler._op_bytearray8,
    }

    def counted(handler: Any) -> Any:
        def run(self: RestrictedUnpickler) -> None:
            self._opcodes_left -= 1
            if self._opcodes_left < 0:
                raise _Refused(
                    f"it runs more opcodes than a {self._size}-byte data file needs; expected at most"
                    " 100,000 plus one per 256 bytes"
                )
            handler(self)

        return run

    def refused(code: int) -> Any:
        def run(self: RestrictedUnpickler) -> None:
            if code not in _OPCODE_NAMES:
                raise pickle.UnpicklingError(f"byte 0x{code:02x} is not a pickle opcode")
            raise _Refused(
                f"it uses the opcode {_OPCODE_NAMES[code]}; expected only those that build dicts, lists,"
                " tuples, strings, numbers and numpy arrays"
            )

        return run

    table = {}
    for code in range(256):
        name = _OPCODE_NAMES.get(code)
        if name in replaced:
            table[code] = counted(replaced[name])
        elif name in _KEPT_OPCODES:
            table[code] = counted(pickle._Unpickler.dispatch[code])
        else:
            table[code] = refused(code)
    return table


RestrictedUnpickler.dispatch = _opcode_table()


def restricted_loads(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure becomes a ``DataError``.

    Example:
        >>> import pickle
        >>> restricted_loads(pickle.dumps({b"labels": [3, 7]}, protocol=2))
        {b'labels': [3, 7]}
        >>> restricted_loads(pickle.dumps(print), "evil.pkl")
        Traceback (most recent call last):
        ...
        fn3.errors.DataError: evil.pkl references the global builtins.print, which a data file must not \
use; expected only numpy arrays, lists, dicts, numbers and strings
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except _Refused as err:
        raise DataError(f"{source} is not a plain data pickle: {one_line(err, 240)}") from None
    except EOFError:
        raise DataError(
            f"{source} is not a valid pickle (it ends before its STOP opcode: truncated?);"
            " expected a complete CIFAR python batch file"
        ) from None
    except Exception as err:  # malformed pickles raise many types (UnpicklingError, ValueError, ...)
        raise DataError(
            f"{source} is not a valid pickle ({type(err).__name__}: {one_line(err)});"
            " expected a CIFAR python batch file"
        ) from err


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(
            f"cannot read {path}: {err.strerror or err}; expected a readable file"
        ) from err


def _batch_paths(directory: Path, split: str, suffix: str) -> list[Path]:
    if split not in _BATCH_STEMS:
        raise DataError(f"cifar10 has no split {split!r}; expected 'train' or 'test'")
    paths = [directory / (stem + suffix) for stem in _BATCH_STEMS[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        expected = ", ".join(p.name for p in paths)
        raise DataError(f"{directory} lacks {', '.join(missing)}; expected {expected} there")
    return paths


def _check_labels(labels: np.ndarray, num_classes: int, source: Path) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{source} has labels in {int(labels.min())}..{int(labels.max())};"
            f" expected 0..{num_classes - 1}"
        )


def _binary_classes(directory: Path) -> tuple[str, ...]:
    meta = directory / "batches.meta.txt"
    if not meta.is_file():
        return CIFAR10_CLASSES
    names = tuple(line.strip() for line in _read(meta).decode("utf-8", "replace").splitlines())
    names = tuple(n for n in names if n)
    if len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{meta} lists {len(names)} class names; expected 10, one per line")
    return names


def load_cifar_binary(directory: str | Path, split: str = "train") -> ImageDataset:
    """Load a split of CIFAR-10's binary format from ``directory``.

    Returns images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)``.
    """
    directory = Path(directory)
    classes = _binary_classes(directory)
    images, labels = [], []
    for path in _batch_paths(directory, split, ".bin"):
        data = _read(path)
        if not data or len(data) % _RECORD_BYTES:
            raise DataError(
                f"{path} has {len(data)} bytes; expected a positive multiple of {_RECORD_BYTES}"
                " (1 label byte + 3072 pixel bytes per image)"
            )
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD_BYTES)  # (n, 3073)
        _check_labels(records[:, 0], len(classes), path)
        labels.append(records[:, 0].astype(np.int64))  # (n,)
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))  # (n, 3, 32, 32) view
    image_array = np.concatenate(images)  # (N, 3, 32, 32), a fresh writable copy
    label_array = np.concatenate(labels)  # (N,)
    return ImageDataset(
        torch.from_numpy(image_array), torch.from_numpy(label_array), classes, f"cifar10/{split}"
    )


def _get(mapping: dict, key: str, source: Path) -> Any:
    """``mapping[b"key"]`` (Python 2 pickles) or ``mapping["key"]`` (Python 3 pickles)."""
    for k in (key.encode(), key):
        if k in mapping:
            return mapping[k]
    raise DataError(f"{source} has no {key!r} entry; expected a dict with b{key!r}")


def _python_classes(directory: Path) -> tuple[str, ...]:
    meta = directory / "batches.meta"
    if not meta.is_file():
        return CIFAR10_CLASSES
    content = restricted_loads(_read(meta), str(meta))
    if not isinstance(content, dict):
        raise DataError(f"{meta} holds a {type(content).__name__}; expected a dict")
    names = _get(content, "label_names", meta)
    if (
        not isinstance(names, list | tuple)
        or len(names) != len(CIFAR10_CLASSES)
        or not all(isinstance(n, str | bytes) for n in names)
    ):
        raise DataError(f"{meta} has label_names {_describe(names)}; expected a list of 10 names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _label_array(labels: object, count: int, path: Path) -> np.ndarray:
    """``labels`` (a list of ints as CIFAR stores them, or an integer array) as int64 ``(count,)``."""
    if not (isinstance(labels, list | tuple) or (isinstance(labels, np.ndarray) and labels.ndim == 1)):
        raise DataError(f"{path} has labels {_describe(labels)}; expected a list of {count} integers")
    if len(labels) != count:
        raise DataError(f"{path} has {len(labels)} labels for {count} images; expected one per image")
    if isinstance(labels, np.ndarray):
        if labels.size and labels.dtype.kind not in "iu":
            raise DataError(f"{path} has labels of type {labels.dtype}; expected integers 0..9")
        return labels.astype(np.int64)
    # Check the items before numpy sees them: np.asarray would turn a float into a float array, a
    # bool into a bool array and a list nested through the pickle's memo into an exponential walk.
    for label in labels:
        if type(label) is not int:
            raise DataError(f"{path} has a label that is {_describe(label)}; expected integers 0..9")
    try:
        return np.array(labels, dtype=np.int64)
    except OverflowError:
        raise DataError(f"{path} has a label beyond 64 bits; expected integers 0..9") from None


def load_cifar_python(directory: str | Path, split: str = "train") -> ImageDataset:
    """Load a split of CIFAR-10's python (pickle) format from ``directory``, safely.

    Returns images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)``.
    """
    directory = Path(directory)
    paths = _batch_paths(directory, split, "")
    classes = _python_classes(directory)
    images, labels = [], []
    for path in paths:
        raw = _read(path)
        batch = restricted_loads(raw, str(path))
        if not isinstance(batch, dict):
            raise DataError(f"{path} holds a {type(batch).__name__}; expected a dict")
        data = _get(batch, "data", path)
        label_list = _get(batch, "labels", path)
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != _IMAGE_BYTES
        ):
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
            raise DataError(f"{path} has data {got}; expected a uint8 array of shape (N, 3072)")
        if data.nbytes > len(raw):  # RestrictedUnpickler ensures it; a cheap check of that promise
            raise DataError(
                f"{path} claims {len(data)} images ({data.nbytes} bytes) in a {len(raw)}-byte file;"
                " expected the pixels to be stored in the file"
            )
        label_array = _label_array(label_list, len(data), path)  # (n,) int64
        _check_labels(label_array, len(classes), path)
        images.append(data.reshape(-1, 3, 32, 32))  # (n, 3, 32, 32)
        labels.append(label_array)
    return ImageDataset(
        torch.from_numpy(np.concatenate(images)),  # (N, 3, 32, 32) uint8
        torch.from_numpy(np.concatenate(labels)),  # (N,) int64
        classes,
        f"cifar10/{split}",
    )
