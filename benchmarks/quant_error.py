"""The weight error of fn3's two quantization schemes, and what they do to a 2-4 bit ResNet-20.

Both schemes store the same bits: keeping ``c`` of ``B = 8`` bits keeps the top ``c`` bits of the
8-bit code. ``truncate`` (fn3 before file format 2) reads that code at the *bottom* of its cell, a
bias of half a cell (at 2 bits a quarter of ``max|w|``); ``centred`` (the default since) reads it at
the cell's centre, ``floor(code / u) * u + (u - 1) / 2`` with ``u = 2^(B-c)``, and rounds c-bit
activations on the c-bit grid of the shared clipping level.

This script measures the relative error ``sum (q(w) - w)^2 / sum w^2`` of both, on the convolution
weights of a trained run (the stem excluded: it stays in float) or, without a run, on Gaussian weights.
Beside them, two readings of the *same stored bits* that fn3 does not implement, as bounds on what a
better reconstruction could win (issue 11): ``centred x a`` multiplies each output channel's centred
c-bit values by the least-squares factor ``a = <w, q> / <q, q>`` (still a uniform grid, so an ONNX
``DequantizeLinear`` with a per-channel scale could express it; ``a`` is a function of the stored
8-bit codes when ``w`` is read as its 8-bit value), and ``cell means`` reads every cell at the mean of
the weights in it (a table of ``2^c`` values per channel: the least error any reconstruction of those
bits can have).
With ``--train BITS`` it trains experiment 5's independent ResNet-20 at ``BITS`` bits (same data,
epochs, optimizer and seed) once per scheme (``create_model(..., quant_scheme=...)``) and prints both
test accuracies.

    python benchmarks/quant_error.py                                   # Gaussian weights
    python benchmarks/quant_error.py --run gaussian \
        benchmarks/results/runs/exp5_bits/independent__one_per_bit_width/8_bits
    python benchmarks/quant_error.py --train 2                         # ~10 min per scheme, one core
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import fn3
from fn3._io import atomic_write_text
from fn3.nn.functional import SCHEMES, fake_quant_weight, weight_codes, weight_scale

BITS = (8, 6, 4, 3, 2)


def weights(run: str | None) -> list[torch.Tensor]:
    """The convolution weights of run directory ``run`` after the stem, or Gaussian ones for ``None``
    or ``"gaussian"``."""
    if run in (None, "gaussian"):
        g = torch.Generator().manual_seed(0)
        return [torch.randn(64, 64, 3, 3, generator=g) * 0.05 for _ in range(8)]
    from fn3.run import load_run

    model = load_run(run).model
    return [p.detach() for p in model.parameters() if p.dim() == 4][1:]  # convolutions after the stem


def relative_errors(ws: list[torch.Tensor], keep: int, total_bits: int = 8) -> dict[str, float]:
    """Relative squared error of the ``keep``-bit weights under each scheme."""
    err = dict.fromkeys(SCHEMES, 0.0)
    norm = 0.0
    for w in ws:
        s = weight_scale(w, total_bits)
        for scheme in SCHEMES:
            err[scheme] += float(((fake_quant_weight(w, s, total_bits, keep, scheme=scheme) - w) ** 2).sum())
        norm += float((w**2).sum())
    return {k: v / norm for k, v in err.items()}


def bounds(ws: list[torch.Tensor], keep: int, total_bits: int = 8) -> tuple[float, float]:
    """Relative squared error of the ``keep``-bit weights read as ``centred x a`` and as ``cell means``
    (see the module docstring): what the same stored bits could give with a better reconstruction."""
    scaled = means = norm = 0.0
    for w in ws:
        s = weight_scale(w, total_bits)
        flat = w.flatten(1)  # (out, fan_in)
        q = fake_quant_weight(w, s, total_bits, keep, scheme="centred").flatten(1)
        a = (flat * q).sum(1, keepdim=True) / (q * q).sum(1, keepdim=True).clamp_min(1e-30)  # (out, 1)
        scaled += float(((a * q - flat) ** 2).sum())
        # The cell of a weight: its kept top bits (its c-bit code, 0 .. 2^c - 1 once shifted up),
        # numbered apart for every output channel.
        top = torch.floor(weight_codes(w, s, total_bits).flatten(1) / 2 ** (total_bits - keep))
        cells = (top + 2 ** (keep - 1)).long() + 2**keep * torch.arange(q.shape[0])[:, None]  # (out, fan_in)
        n = 2**keep * q.shape[0]
        sums = torch.zeros(n).index_add_(0, cells.flatten(), flat.flatten())
        counts = torch.zeros(n).index_add_(0, cells.flatten(), torch.ones(flat.numel()))
        cell_mean = (sums / counts.clamp_min(1))[cells]
        means += float(((cell_mean - flat) ** 2).sum())
        norm += float((w**2).sum())
    return scaled / norm, means / norm


def train_accuracy(bits: int, scheme: str) -> tuple[float, float]:
    """``(test accuracy, training seconds)`` of experiment 5's independent model at ``bits`` bits."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "repro"))
    from exp5_bits import experiment

    from fn3.data import batches, channel_stats, load_dataset
    from fn3.evaluate import accuracy
    from fn3.run import build_model
    from fn3.spec import parse_spec
    from fn3.train import fit

    exp = experiment()
    cfg = exp.base.replace(rule="fixed", fixed_spec=f"bits={bits}", eval_specs=(),
                           model_kwargs={"quant_scheme": scheme})
    train = load_dataset(cfg.data, "train", cfg.data_dir, limit=cfg.limit)
    mean, std = channel_stats(train)
    cfg = cfg.replace(mean=mean, std=std)
    test = load_dataset(cfg.data, "test", cfg.data_dir, limit=exp.test_limit)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train)
    start = time.process_time()
    fit(model, train, cfg, progress=False)
    seconds = time.process_time() - start
    spec = parse_spec(f"bits={bits}", fn3.space(model))
    return accuracy(model, list(batches(test, 256, shuffle=False, mean=mean, std=std)), spec), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="*", default=None,
                   help="run directories whose weights to read; 'gaussian' (the default): Gaussian weights")
    p.add_argument("--train", type=int, default=None, metavar="BITS",
                   help="train experiment 5's independent model at BITS bits under each scheme")
    args = p.parse_args()
    if args.train is not None:
        torch.set_num_threads(1)
        print("| bits | scheme | test accuracy | training CPU s |\n| ---: | --- | ---: | ---: |")
        for scheme in SCHEMES:
            acc, sec = train_accuracy(args.train, scheme)
            print(f"| {args.train} | {scheme} | {100 * acc:.2f}% | {sec:.0f} |", flush=True)
        return
    lines = [
        "## Weight error of the quantization schemes (`quant_error`)",
        "",
        "Command: `" + " ".join(["python benchmarks/quant_error.py", *sys.argv[1:]]) + "`. Relative error "
        "sum((q(w) - w)^2) / sum(w^2) of the c-bit weights read from the same stored bit-planes; the last "
        "two columns are readings fn3 does not implement, bounds on what a better reconstruction of those "
        "bits could win (the module docstring says how each is computed). Static error only: a model "
        "trained through a quantizer adapts its weights to it.",
        "",
    ]
    for run in args.run or [None]:
        ws = weights(run)
        name = "Gaussian, 8 layers of 64x64x3x3" if run in (None, "gaussian") else run
        lines += [f"Weights: {name} ({sum(w.numel() for w in ws):,} values)",
                  "",
                  "| bits | relative error, truncate | relative error, centred | truncate / centred "
                  "| centred x a (not in fn3) | cell means (not in fn3) |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for keep in BITS:
            e = relative_errors(ws, keep)
            ratio = f"{e['truncate'] / e['centred']:.1f}x" if e["centred"] > 0 else "-"
            scaled, means = bounds(ws, keep)
            lines.append(f"| {keep} | {e['truncate']:.4f} | {e['centred']:.4f} | {ratio} | {scaled:.4f} "
                         f"| {means:.4f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "quant_error.md", text)

if __name__ == "__main__":
    main()
