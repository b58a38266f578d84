"""Where the 2-bit drop of a family nested in bits comes from: its weight bits or its activation bits.

Experiment 5's bit-widths quantize both at once (``bits=2``: every convolution's weights *and* its
input activations at 2 bits). fn3's space has one axis per layer for each (``<layer>.wbits``,
``<layer>.abits``), so the same trained model can be read with the two set apart: 2-bit weights on
8-bit activations, and so on. This script scores fn3's default (a clipping level per bit-width,
weights on a range of 3 rms; config version 12) at every pair of weight and activation bit-widths in
``BITS``, with the page's protocol (BatchNorm re-estimated per sub-model on the page's augmented
calibration batches) on the 8,000 CIFAR-10 test images the reproduction page does not use, and
reports how much of the drop from 8 to 2 bits each side carries, with the paired standard error
(every reading sees the same images). The 2,000-image page subset is scored at 8/8 and 2/2 bits and
must give the page's own numbers (the script checks it).

Only the *stored* weights must nest as bit-plane prefixes; activations are quantized at run time, so
a deployment may pair narrow weights (the file's size) with wider activations. This table says what
that buys.

    python benchmarks/repro/bit_split.py                      # every kept run of the default
    python benchmarks/repro/bit_split.py --seed 2 --only exp5_bits_36ep

Writes ``benchmarks/results/bit_split.json`` (one entry per experiment and training seed: a later
command replaces only the entries it measured) and ``docs/benchmarks/bit_split.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from heldout import correct, page_checked, paired, scoring_data
from runner import RESULTS, ROOT, Experiment, at_seed, weight_range

from fn3._io import atomic_write_text
from fn3.run import load_run

#: The weight and activation bit-widths read, widest first (6 bits sits within noise of 8 on every run).
BITS = (8, 4, 3, 2)
#: The arm scored: fn3 train's default for a family nested in bits alone (config version 12).
ARM = weight_range(3.0).name


def experiments() -> list[Experiment]:
    """Experiment 5 at each budget it ran: 6, 18 and 36 epochs."""
    import exp5_bits

    return [exp5_bits.experiment(), exp5_bits.longer(), exp5_bits.longer(36)]


def split_text(wbits: int, abits: int) -> str:
    """The spec, as ``fn3.parse_spec`` reads it, of every weight at ``wbits`` and every quantized
    activation at ``abits`` (all other axes whole): ``split_text(2, 8)`` is 2-bit weights, 8-bit inputs."""
    return f"wbits={wbits},abits={abits}"


def run_one(exp: Experiment, results: dict[str, Any], quick: bool = False) -> dict[str, Any]:
    """Every (weight, activation) pair of ``BITS`` for the default's model of ``exp``, scored as
    ``heldout.py`` scores a budget (the same data, calibration batches and page check)."""
    ctx, page_b, rest_b = scoring_data(exp, results, quick)
    arm = results["arms"][ARM]
    model = load_run(arm["runs"]["model"]["run_dir"]).model
    for b in BITS[0], BITS[-1]:  # the page's 8- and 2-bit readings, reproduced exactly
        label = f"{b} bits"
        page_checked(exp, ARM, label, arm["accuracy"]["bn_aug"][label],
                     correct(model, ctx, split_text(b, b), page_b))
    hits = {(w, a): correct(model, ctx, split_text(w, a), rest_b) for w in BITS for a in BITS}
    top, low = BITS[0], BITS[-1]
    out: dict[str, Any] = {"arm": ARM, "heldout_images": len(hits[(top, top)]),
                           "grid": {f"w{w}a{a}": float(h.float().mean()) for (w, a), h in hits.items()}}
    for label, pair in (("weights", (low, top)), ("activations", (top, low)), ("both", (low, low))):
        d, se = paired(hits[pair], hits[(top, top)])  # 8/8 minus the narrower one: a drop, > 0
        out[f"{label}_drop"] = {"heldout": d, "se": se}
    for (w, a), h in hits.items():
        print(f"[{exp.key}] w{w} a{a}: {float(h.float().mean()) * 100:.2f}%", flush=True)
    return out


def render(measured: dict[str, Any]) -> str:
    """The page: per run, the grid of weight x activation bit-widths, then the drops set apart."""
    commands = sorted({r["command"] for r in measured.values()})
    n = {r["heldout_images"] for r in measured.values()}
    lines = ["# Where the 2-bit drop comes from: weights or activations", "",
             f"{', '.join(f'`{c}`' for c in commands)}: fn3's default for a family nested in bits "
             "alone (`" + ARM + "`) read with its weights and its activations at different "
             f"bit-widths, on the {'/'.join(f'{x:,}' for x in sorted(n))} CIFAR-10 test images the "
             "reproduction page does not use, BatchNorm re-estimated per sub-model as on the page. "
             "'2 s.e.' is twice the paired standard error (the same images for every reading).", "",
             "## The drop from 8/8 bits, set apart", "",
             "| run | weights 2 bits, activations 8 | weights 8, activations 2 | both 2 bits | "
             "weights 2 bits, activations 4 |", "| --- | ---: | ---: | ---: | ---: |"]
    for run, r in measured.items():
        cells = [f"{r[k]['heldout'] * 100:.2f} (2 s.e. {2 * r[k]['se'] * 100:.2f})"
                 for k in ("weights_drop", "activations_drop", "both_drop")]
        cells.append(f"{_w2a4_drop(r) * 100:.2f}")
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    if measured:
        mean = [sum(r[k]["heldout"] for r in measured.values()) / len(measured)
                for k in ("weights_drop", "activations_drop", "both_drop")]
        mean.append(sum(_w2a4_drop(r) for r in measured.values()) / len(measured))
        lines.append("| mean | " + " | ".join(f"{v * 100:.2f}" for v in mean) + " |")
    lines += ["", "The last column: 2-bit weights (the 2-bit file's size) run on 4-bit activations, a "
              "sub-model of the same nested model (`fn3 export RUN --spec bits=2,abits=4`; `fn3 search` "
              "takes any mix of the `.wbits` and `.abits` axes). The grid trains weights and "
              "activations at the same bit-width, so every pair off the diagonal below is one the "
              "family gives without having trained it."]
    for run, r in measured.items():
        bits = sorted({int(k[1:].split("a")[0]) for k in r["grid"]}, reverse=True)
        lines += ["", f"## {run}: accuracy (%) by weight bits (rows) and activation bits (columns)", "",
                  "| weights \\ activations | " + " | ".join(f"{a}" for a in bits) + " |",
                  "| --- |" + " ---: |" * len(bits)]
        for w in bits:
            lines.append(f"| {w} | " + " | ".join(f"{r['grid'][f'w{w}a{a}'] * 100:.2f}" for a in bits) + " |")
    return "\n".join(lines) + "\n"


def _w2a4_drop(r: dict[str, Any]) -> float:
    """8/8 bits minus 2-bit weights on 4-bit activations, from the grid (a fraction)."""
    return r["grid"]["w8a8"] - r["grid"]["w2a4"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=None, help="only these experiment keys")
    p.add_argument("--seed", type=int, default=None, help="the runs of the experiments' --seed N")
    p.add_argument("--quick", action="store_true", help="the experiments' --quick runs (a test)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where the page's result JSONs are (default benchmarks/results[/seed<N>])")
    p.add_argument("--out", type=Path, default=None,
                   help="the page to write (default docs/benchmarks/bit_split.md; --quick: none)")
    p.add_argument("--json", type=Path, default=None,
                   help="the readings file (default benchmarks/results/bit_split.json, or in --results-dir)")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    exps, default_dir = at_seed(experiments(), args.seed, args.quick)
    results_dir = args.results_dir or default_dir
    saved_path = args.json or (results_dir / "bit_split.json" if args.quick or args.results_dir
                               else RESULTS / "bit_split.json")
    out = args.out or (None if args.quick else ROOT / "docs" / "benchmarks" / "bit_split.md")
    command = "python benchmarks/repro/bit_split.py" + (" --quick" if args.quick else "") + (
        f" --seed {args.seed}" if args.seed is not None else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    measured = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    done = 0
    for exp in exps:
        if args.only and exp.key not in args.only:
            continue
        path = results_dir / f"{exp.key}.json"
        results = json.loads(path.read_text()) if path.is_file() else {"arms": {}}
        run_dir = results["arms"].get(ARM, {}).get("runs", {}).get("model", {}).get("run_dir")
        if not run_dir or not Path(run_dir).is_dir():
            print(f"[{exp.key}] skipped: no model of {ARM!r} on disk in {path}", flush=True)
            continue
        start = time.perf_counter()
        key = f"{exp.key}, seed {exp.base.seed}"
        measured[key] = {**run_one(exp, results, args.quick), "command": command,
                         "seconds": time.perf_counter() - start}
        done += 1
    if not done:
        print("nothing scored: no kept model of the default matched", file=sys.stderr)
        return 1
    atomic_write_text(saved_path, json.dumps(dict(sorted(measured.items())), indent=1))
    if out is not None:
        atomic_write_text(out, render(dict(sorted(measured.items()))))
        print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
