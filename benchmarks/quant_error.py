"""The weight error of fn3's nested bit truncation, against a mid-cell reconstruction of the same bits.

fn3 keeps ``c`` of ``B = 8`` bits by truncating the low bits of the 8-bit code (``floor``), so a value
is reconstructed at the *bottom* of its c-bit cell. For weights centred on zero this is a bias of half
a cell (at 2 bits, a quarter of ``max|w|``): every small negative weight becomes ``-max|w| / 2``.
Reconstructing at the cell's *middle* (``floor(code / u) * u + u / 2``, ``u = 2^(B-c)``) keeps the same
bit-planes and the same decision thresholds (the grids of thresholds still nest) without the bias.

This script measures the relative error ``sum (q(w) - w)^2 / sum w^2`` of both, on the convolution
weights of a trained run (the stem excluded: it stays in float) or, without a run, on Gaussian weights.
With ``--train BITS`` it trains experiment 5's independent ResNet-20 at ``BITS`` bits (same data,
epochs, optimizer and seed) twice, with fn3's truncation and with a mid-cell reconstruction patched
into this process only (weights and activations), and prints both test accuracies. It changes nothing
in fn3; it quantifies a known weakness (see docs/reproduction.md, experiment 5).

    python benchmarks/quant_error.py                                   # Gaussian weights
    python benchmarks/quant_error.py --run \
        benchmarks/results/runs/exp5_bits/independent__one_per_bit_width/8_bits
    python benchmarks/quant_error.py --train 2                         # ~10 min on one core
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import fn3
import fn3.nn.functional as qf
from fn3.nn.functional import truncate_codes, weight_codes, weight_scale

BITS = (8, 6, 4, 3, 2)


def weights(run: str | None) -> list[torch.Tensor]:
    if run is None:
        g = torch.Generator().manual_seed(0)
        return [torch.randn(64, 64, 3, 3, generator=g) * 0.05 for _ in range(8)]
    from fn3.run import load_run

    model = load_run(run).model
    return [p.detach() for p in model.parameters() if p.dim() == 4][1:]  # convolutions after the stem


def relative_errors(ws: list[torch.Tensor], keep: int, total_bits: int = 8) -> tuple[float, float]:
    """``(floor, mid-cell)`` relative squared error of the ``keep``-bit weights."""
    err_floor = err_mid = norm = 0.0
    unit = 2 ** (total_bits - keep)
    for w in ws:
        s = weight_scale(w, total_bits)
        shape = (-1,) + (1,) * (w.dim() - 1)
        codes = truncate_codes(weight_codes(w, s, total_bits), total_bits, keep)
        mid = codes + (unit / 2 if keep < total_bits else 0.0)
        err_floor += float(((codes * s.reshape(shape) - w) ** 2).sum())
        err_mid += float(((mid * s.reshape(shape) - w) ** 2).sum())
        norm += float((w**2).sum())
    return err_floor / norm, err_mid / norm


def _mid_cell(codes: torch.Tensor, total_bits: int, keep: int, mask: int | None = None) -> torch.Tensor:
    """fn3's truncation, reconstructed at the middle of the kept cell (prefix planes only)."""
    out = truncate_codes(codes, total_bits, keep, mask)
    prefix = ((1 << total_bits) - 1) ^ ((1 << (total_bits - keep)) - 1)  # fn3 passes it for prefixes too
    return out + 2 ** (total_bits - keep) / 2 if mask in (None, prefix) and keep < total_bits else out


def train_accuracy(bits: int, mid: bool) -> tuple[float, float]:
    """``(test accuracy, training seconds)`` of experiment 5's independent model at ``bits`` bits."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "repro"))
    from exp5_bits import experiment

    from fn3.data import batches, channel_stats, load_dataset
    from fn3.evaluate import accuracy
    from fn3.run import build_model
    from fn3.spec import parse_spec
    from fn3.train import fit

    exp = experiment()
    cfg = exp.base.replace(rule="fixed", fixed_spec=f"bits={bits}", eval_specs=())
    train = load_dataset(cfg.data, "train", cfg.data_dir, limit=cfg.limit)
    mean, std = channel_stats(train)
    cfg = cfg.replace(mean=mean, std=std)
    test = load_dataset(cfg.data, "test", cfg.data_dir, limit=exp.test_limit)
    original = qf.truncate_codes
    qf.truncate_codes = _mid_cell if mid else original  # fake_quant_* look it up in their module
    try:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, train)
        start = time.process_time()
        fit(model, train, cfg, progress=False)
        seconds = time.process_time() - start
        spec = parse_spec(f"bits={bits}", fn3.space(model))
        return accuracy(model, list(batches(test, 256, shuffle=False, mean=mean, std=std)), spec), seconds
    finally:
        qf.truncate_codes = original


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a run directory (default: Gaussian weights)")
    p.add_argument("--train", type=int, default=None, metavar="BITS",
                   help="train experiment 5's independent model at BITS bits, truncated vs mid-cell")
    args = p.parse_args()
    if args.train is not None:
        torch.set_num_threads(1)
        print("| bits | reconstruction | test accuracy | training CPU s |\n| ---: | --- | ---: | ---: |")
        for mid in (False, True):
            acc, sec = train_accuracy(args.train, mid)
            print(f"| {args.train} | {'mid-cell' if mid else 'floor (fn3)'} | {100 * acc:.2f}% | {sec:.0f} |",
                  flush=True)
        return
    ws = weights(args.run)
    print(f"weights: {args.run or 'Gaussian'} ({sum(w.numel() for w in ws):,} values)")
    print("| bits | relative error, floor (fn3) | relative error, mid-cell | floor / mid |")
    print("| ---: | ---: | ---: | ---: |")
    for keep in BITS:
        f, m = relative_errors(ws, keep)
        ratio = f"{f / m:.1f}x" if m > 0 else "-"
        print(f"| {keep} | {f:.4f} | {m:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
