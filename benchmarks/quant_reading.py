"""Would reading the same stored bits differently train a better 2-bit model? (issue 11)

fn3 reads a c-bit weight at the centre of its cell of 8-bit codes (``quant_scheme="centred"``). On
trained weights the centred 2-bit values sit too far out: a per-output-channel least-squares multiple
of them cuts the static weight error at 2 bits by about a fifth (0.214 -> 0.176 on a ResNet-32;
``python benchmarks/quant_error.py``, its ``centred x a`` column). That reading keeps every stored
bit (the codes are unchanged), stays a uniform grid with a per-channel scale (an ONNX
``DequantizeLinear`` could express it) and is a function of the stored 8-bit codes. But a network
trained through a quantizer adapts its weights to it, so the static error need not predict accuracy:
this script trains both ways and scores them, to decide whether the reading is worth building into
fn3 (its files, ONNX export and integer path).

The ``fitted`` reading is **not part of fn3**: for the runs of this script only it is patched into
:func:`fn3.nn.functional.grid_values` (training and evaluation; nothing is exported), computed over the
rows of the weight a sub-model uses (a family nested in bits alone slices no weight: the full rows).

Per reading, it trains experiment 5's fn3 default (the grid 8/6/4/2 bits, the norm-matched sum, a
clipping level per bit-width) and the network trained alone at 2 bits, on the same data (5,000
CIFAR-10 images), epochs, optimizer and seed, and scores every bit-width on the whole test split
(10,000 images) with BatchNorm re-estimated on augmented training batches. Each reading's run writes
its per-image hits to ``benchmarks/results/quant_reading/``, so the two readings can train in two
processes at once; ``--report`` pairs them over the same images (2 s.e. of a paired difference).

    python benchmarks/quant_reading.py --reading centred --epochs 18    # ~40 min on one core
    python benchmarks/quant_reading.py --reading fitted --epochs 18     # beside it, on the other
    python benchmarks/quant_reading.py --report --epochs 18             # docs/benchmarks/quant_reading.md
    (``--seed N`` on all three: another training seed, its page quant_reading_seedN.md)
    python benchmarks/quant_reading.py --quick                          # seconds: both, tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import torch

import fn3
import fn3.nn.functional as functional
from fn3._io import atomic_write_text
from fn3.data import batches, channel_stats, load_dataset
from fn3.evaluate import bn_recalibrated, predict
from fn3.run import build_model
from fn3.spec import parse_spec
from fn3.train import calibration_batches, fit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "repro"))
from exp5_bits import experiment  # noqa: E402
from heldout import paired as heldout_paired  # noqa: E402
from runner import AUTO_NORM_CLIP  # noqa: E402

READINGS = ("centred", "fitted")
BITS = (8, 6, 4, 3, 2)
OUT = ROOT / "benchmarks" / "results" / "quant_reading"
DEFAULT, ALONE = "fn3 default (grid, norm-matched sum, clip per bit-width)", "network alone at 2 bits"


def fitted_values(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``grid_values`` read as the least-squares multiple of the centred values, per output row:
    ``a * q`` with ``a = <c, q> / <q, q>``, ``c`` the 8-bit codes (out, ...) and ``q`` their centred
    c-bit values. At 8 bits ``q = c`` and ``a = 1``: the 8-bit model is unchanged."""

    def values(codes: torch.Tensor, total_bits: int, keep: int, mask: int | None = None,
               scheme: str = "centred") -> torch.Tensor:
        q = original(codes, total_bits, keep, mask, scheme)
        if scheme != "centred" or functional.kept_bits(total_bits, keep, mask) >= total_bits:
            return q
        c, v = codes.flatten(1), q.flatten(1)  # (out, fan_in)
        a = (c * v).sum(1) / (v * v).sum(1).clamp_min(1e-12)  # (out,)
        return q * a.reshape(-1, *([1] * (q.dim() - 1)))

    return values


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Inside the block fn3 reads weights as ``name`` says (``centred``: fn3 as it is)."""
    original = functional.grid_values
    if name == "fitted":
        functional.grid_values = fitted_values(original)
    try:
        yield
    finally:
        functional.grid_values = original


def run_reading(name: str, epochs: int | None, seed: int, quick: bool) -> dict:
    """Train the default family and the 2-bit network alone under reading ``name``; per-image hits."""
    exp = experiment()
    base = exp.config(quick).replace(seed=seed, **({"epochs": epochs} if epochs else {}))
    train = load_dataset(base.data, "train", base.data_dir, limit=base.limit)
    mean, std = channel_stats(train)
    base = base.replace(mean=mean, std=std)
    test = load_dataset(base.data, "test", base.data_dir, limit=10 if quick else None)  # per class
    test_batches = list(batches(test, 256, shuffle=False, mean=mean, std=std))
    arms = {DEFAULT: (base.replace(**AUTO_NORM_CLIP.train), BITS),
            ALONE: (base.replace(rule="fixed", fixed_spec="bits=2"), (2,))}
    out: dict = {"reading": name, "epochs": base.epochs, "seed": seed, "test_images": len(test), "arms": {}}
    with reading(name):
        for arm, (cfg, bits) in arms.items():
            torch.manual_seed(cfg.seed)
            model = build_model(cfg, train)
            cpu = time.process_time()
            fit(model, train, cfg, progress=False)
            entry = {"cpu_s": time.process_time() - cpu, "hits": {}, "accuracy": {}}
            calib = list(islice(calibration_batches(train, cfg), cfg.recalibrate_batches))
            for b in bits:
                spec = parse_spec(f"bits={b}", fn3.space(model))
                with bn_recalibrated(model, spec, calib, len(calib)):
                    pred, y = predict(model, test_batches, spec)
                hits = (pred == y)
                entry["hits"][str(b)] = "".join("1" if h else "0" for h in hits.tolist())
                entry["accuracy"][str(b)] = float(hits.float().mean())
            accs = ", ".join(f"{b} bits {100 * a:.2f}%" for b, a in entry["accuracy"].items())
            print(f"{name}: {arm}: {accs} ({entry['cpu_s']:.0f} s CPU)", flush=True)
            out["arms"][arm] = entry
    return out


def paired(a: str, b: str) -> tuple[float, float]:
    """:func:`heldout.paired` (``b - a`` and its standard error over the same images) of two runs'
    per-image hits as saved (a string of 0s and 1s)."""
    return heldout_paired(*(torch.tensor([c == "1" for c in hits]) for hits in (a, b)))


def report(results: dict[str, dict], command: str) -> str:
    """The Markdown page: each reading's accuracy per bit-width, the fitted minus the centred reading,
    and each reading's 8-bit minus 2-bit drop, every difference paired over the same test images."""
    centred, fitted = results["centred"], results["fitted"]
    lines = [
        "## Reading the stored bits: centred against a fitted multiple "
        f"(`quant_reading`, seed {centred['seed']})",
        "",
        f"Command: `{command}`. CIFAR-10, ResNet-20 nested in bits, experiment 5's setup at "
        f"{centred['epochs']} epochs, seed {centred['seed']}, scored on {centred['test_images']:,} test "
        "images (BatchNorm re-estimated on augmented training batches). `fitted` reads each c-bit weight "
        "at a per-channel least-squares multiple of its centred value (not part of fn3: patched in for this "
        "run; see the script's docstring). 2 s.e. of a paired difference in brackets.",
        "",
        "| arm | bits | centred | fitted | fitted - centred |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for arm, entry in centred["arms"].items():
        other = fitted["arms"][arm]
        for b, acc in entry["accuracy"].items():
            d, se = paired(entry["hits"][b], other["hits"][b])
            lines.append(f"| {arm} | {b} | {100 * acc:.2f}% | {100 * other['accuracy'][b]:.2f}% "
                         f"| {100 * d:+.2f} pt ({200 * se:.2f}) |")
    lines += ["", "| reading | 8 bits - 2 bits, fn3 default | 2 bits: default - network alone "
              "| training CPU s |", "| --- | ---: | ---: | ---: |"]
    for name, res in results.items():
        arm = res["arms"][DEFAULT]
        drop, drop_se = paired(arm["hits"]["2"], arm["hits"]["8"])
        gap, gap_se = paired(res["arms"][ALONE]["hits"]["2"], arm["hits"]["2"])
        cpu = sum(e["cpu_s"] for e in res["arms"].values())
        lines.append(f"| {name} | {100 * drop:.2f} pt ({200 * drop_se:.2f}) | {100 * gap:+.2f} pt "
                     f"({200 * gap_se:.2f}) | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reading", choices=READINGS, action="append",
                   help="train under this reading (repeatable; default: both, one after the other)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: experiment 5's, 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true", help="pair the two readings' saved hits into the page")
    p.add_argument("--quick", action="store_true", help="seconds: tiny subset, 1 epoch, tiny model")
    p.add_argument("--out", type=Path, default=None, help=f"where the hits go (default {OUT})")
    args = p.parse_args(argv)
    out = args.out or (OUT / "quick" if args.quick else OUT)
    tag = f"{args.epochs or ('quick' if args.quick else 6)}ep_seed{args.seed}"
    if not args.report:
        torch.set_num_threads(1)
        for name in args.reading or READINGS:
            res = run_reading(name, args.epochs, args.seed, args.quick)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / f"{name}_{tag}.json", json.dumps(res))
    if args.report or not args.reading:
        files = {name: out / f"{name}_{tag}.json" for name in READINGS}
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            print(f"error: no saved run of {', '.join(missing)}; train it first (--reading NAME, same "
                  "--epochs and --seed)", file=sys.stderr)
            return 2
        results = {name: json.loads(f.read_text()) for name, f in files.items()}
        command = "python benchmarks/quant_reading.py " + " ".join(sys.argv[1:] if argv is None else argv)
        text = report(results, command.strip())
        print(text)
        if not args.quick:
            page = "quant_reading" + (f"_seed{args.seed}" if args.seed else "")  # one page per seed
            atomic_write_text(ROOT / "docs" / "benchmarks" / f"{page}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
