"""Bit packing: ``c``-bit integer codes take ``c`` bits on disk, and bit-planes for the nested file.

All functions are vectorised (numpy ``packbits``/``unpackbits`` over a ``(n, c)`` bit matrix), MSB
first, big-endian bit order inside each byte, so the packed stream of ``n`` codes is exactly
``ceil(n * c / 8)`` bytes.

Example:
    >>> import torch
    >>> codes = torch.tensor([-4, -1, 0, 3], dtype=torch.int8)        # 3-bit two's complement
    >>> data = pack_codes(codes, 3)
    >>> len(data)                                                     # 4 codes x 3 bits = 12 bits
    2
    >>> unpack_codes(data, 3, 4).tolist()
    [-4, -1, 0, 3]
    >>> planes = to_planes(torch.tensor([-128, 127, 5]), 8)           # (8, 3) bits, plane 0 = MSB
    >>> from_planes(planes[:2], (0, 1)).tolist()                      # top 2 bits = floor(code / 64)
    [-2, 1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fn3.export.qmodules import code_dtype

__all__ = [
    "from_planes",
    "keep_planes",
    "pack_bits",
    "pack_codes",
    "packed_size",
    "to_planes",
    "unpack_bits",
    "unpack_codes",
]


def packed_size(n: int, bits: int) -> int:
    """Bytes taken by ``n`` codes of ``bits`` bits: ``ceil(n * bits / 8)``."""
    return (n * bits + 7) // 8


def pack_bits(bits: np.ndarray) -> bytes:
    """Pack a flat 0/1 array into bytes (MSB first; the last byte is zero-padded)."""
    return np.packbits(np.asarray(bits, dtype=np.uint8).reshape(-1)).tobytes()


def unpack_bits(data: bytes | np.ndarray, count: int, bit_offset: int = 0) -> np.ndarray:
    """``count`` bits (uint8 0/1) starting ``bit_offset`` bits into ``data``."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return np.unpackbits(buf, count=bit_offset + count)[bit_offset:]


def pack_codes(codes: torch.Tensor, bits: int) -> bytes:
    """Pack signed ``bits``-bit codes (any shape, values in ``[-2^(bits-1), 2^(bits-1))``) into bytes."""
    v = codes.reshape(-1).to(torch.int64).numpy()
    if v.size and (v.min() < -(1 << (bits - 1)) or v.max() >= 1 << (bits - 1)):
        raise ValueError(f"codes do not fit in {bits} bits")
    u = v & ((1 << bits) - 1)  # two's complement in `bits` bits, (n,)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return pack_bits(((u[:, None] >> shifts) & 1).astype(np.uint8))  # (n, bits) MSB first


def unpack_codes(data: bytes | np.ndarray, bits: int, count: int, bit_offset: int = 0) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``count`` signed codes as the smallest integer dtype (flat)."""
    b = unpack_bits(data, count * bits, bit_offset).reshape(count, bits).astype(np.int64)
    u = b @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))  # (count,) unsigned
    signed = u - ((u >> (bits - 1)) & 1) * (1 << bits)
    return torch.from_numpy(signed).to(code_dtype(bits))


def to_planes(codes: torch.Tensor, total_bits: int) -> np.ndarray:
    """Bit-planes of signed ``total_bits``-bit codes: uint8 ``(total_bits, *codes.shape)``, plane 0 = MSB."""
    u = codes.to(torch.int64).numpy() & ((1 << total_bits) - 1)
    shifts = np.arange(total_bits - 1, -1, -1, dtype=np.int64).reshape(-1, *([1] * u.ndim))
    return ((u[None] >> shifts) & 1).astype(np.uint8)


def from_planes(planes: np.ndarray, kept: Sequence[int]) -> torch.Tensor:
    """Signed ``c``-bit codes from the ``c`` kept planes (uint8 ``(c, ...)``, in ``kept`` order).

    The code's bit ``j`` (from the MSB) is plane ``kept[j]``; plane 0 is the sign, so the result is the
    ``c``-bit two's-complement integer of those bits (see :mod:`fn3.export.qmodules`).
    """
    c = len(kept)
    if planes.shape[0] != c:
        raise ValueError(f"expected {c} planes, got {planes.shape[0]}")
    weights = (1 << np.arange(c - 1, -1, -1, dtype=np.int64)).reshape(-1, *([1] * (planes.ndim - 1)))
    u = (planes.astype(np.int64) * weights).sum(axis=0)
    signed = u - ((u >> (c - 1)) & 1) * (1 << c)
    return torch.from_numpy(np.ascontiguousarray(signed)).to(code_dtype(c))


def keep_planes(codes: torch.Tensor, total_bits: int, planes: Sequence[int]) -> torch.Tensor:
    """The ``c``-bit codes of the kept ``planes`` of signed ``total_bits``-bit integer codes (torch).

    For ``planes = (0..c-1)`` this is ``floor(code / 2^(B-c))``, the top ``c`` bits.
    """
    u = codes.to(torch.int64) & ((1 << total_bits) - 1)
    c = len(planes)
    out = torch.zeros_like(u)
    for j, p in enumerate(planes):
        out |= ((u >> (total_bits - 1 - p)) & 1) << (c - 1 - j)
    return (out - ((out >> (c - 1)) & 1) * (1 << c)).to(code_dtype(c))
