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

Is the 2-bit activation loss a badly learned clipping level? For every quantized input at 2 bits the
script also finds the level that minimises the quantization error of that input's activations on the
calibration (training) batches, and scores the model with those levels in place of the learned ones:
if the learned levels were far from right, the error-minimising ones would score better.

    python benchmarks/repro/bit_split.py                      # every kept run of the default
    python benchmarks/repro/bit_split.py --seed 2 --only exp5_bits_36ep

Writes ``benchmarks/results/bit_split.json`` (one entry per experiment and training seed: a later
command replaces only the entries it measured) and ``docs/benchmarks/bit_split.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import arms  # the page's own calibration batches (same folder)
import torch
from heldout import correct, page_checked, paired, scoring_data
from runner import RESULTS, ROOT, Context, Experiment, at_seed, weight_range

import fn3
from fn3._io import atomic_write_text
from fn3.evaluate import bn_recalibrated
from fn3.nn.base import NestedActQuant
from fn3.nn.functional import act_values, clip_act
from fn3.run import load_run
from fn3.spec import parse_spec

#: The weight and activation bit-widths read, widest first (6 bits sits within noise of 8 on every run).
BITS = (8, 4, 3, 2)
#: Candidate clipping levels of the error search, as multiples of the learned one.
LEVEL_FACTORS = tuple(0.4 + 0.02 * i for i in range(81))  # 0.4x .. 2.0x
#: Every how many activations one is kept for the error search (a 1/7 sample: ~10^6 values a layer).
SAMPLE_EVERY = 7
#: Calibration batches whose activations the error search reads (of the page's 10).
SEARCH_BATCHES = 4
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
    out["levels"] = levels = error_levels(model, ctx, low)
    tuned = copy.deepcopy(model)  # the same model, its 2-bit levels swapped for the error-minimising ones
    with torch.no_grad():
        for name, m in tuned.named_modules():
            if name in levels:
                m.alpha_bits[low - 1] = levels[name]["best"]
                levels[name]["set"] = float(m.clip_level(low).abs())  # what the 2-bit model now reads
    hit = correct(tuned, ctx, split_text(low, low), rest_b)
    d, se = paired(hits[(low, low)], hit)  # error-minimising levels minus learned ones: a gain, > 0
    out["error_levels"] = {"accuracy": float(hit.float().mean()), "gain": d, "se": se}
    return out


def quant_error(x: torch.Tensor, level: float, bits: int, signed: bool) -> float:
    """Mean squared error of ``bits``-bit activations ``x`` (any shape) clipped at ``level``, as fn3's
    quantizer rounds them (the forward value of :func:`fn3.nn.functional.fake_quant_act` on the
    ``c``-bit grid), against what an unquantized layer passes on (``x``, or ``relu(x)`` unsigned).

    Example:
        >>> quant_error(torch.tensor([0.0, 1.0, 2.0, 3.0]), 3.0, 2, False)   # on the grid: exact
        0.0
    """
    alpha = torch.tensor(level)
    q = act_values(clip_act(x, alpha, signed), alpha, bits, bits, signed)  # fn3's rounding, c = bits
    return float((q - (x if signed else x.clamp(min=0.0))).pow(2).mean())


def error_levels(model: torch.nn.Module, ctx: Context, bits: int) -> dict[str, Any]:
    """Each quantized input's learned ``bits``-bit clipping level and the one (of ``LEVEL_FACTORS``
    times it) that minimises the mean squared quantization error of its activations at ``bits`` bits,
    on the page's augmented calibration batches (training images: no test image chooses a level), with
    BatchNorm re-estimated for that sub-model first.
    ``{layer: {"learned", "best", "mse_learned", "mse_best", "power"}}`` (``power``: the mean square of
    the activations the quantizer keeps, so ``mse / power`` is the relative error)."""
    spec = parse_spec(split_text(bits, bits), fn3.space(model))
    calib = arms._calib_batches(ctx, augmented=True)
    quantizers = {n: m for n, m in model.named_modules()
                  if isinstance(m, NestedActQuant) and m.alpha_bits is not None}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in quantizers}
    with bn_recalibrated(model, spec, calib, len(calib)), fn3.active(model, spec), torch.no_grad():
        # hooked after the re-estimation: the activations of the deployed sub-model (running statistics)
        hooks = [m.register_forward_hook(lambda m, inp, out, n=n: seen[n].append(
            inp[0].detach().reshape(-1)[::SAMPLE_EVERY].clone())) for n, m in quantizers.items()]
        try:
            for x, _ in calib[:SEARCH_BATCHES]:
                model(x)
        finally:
            for h in hooks:
                h.remove()
    out: dict[str, Any] = {}
    for n, m in quantizers.items():
        x = torch.cat(seen[n])  # (samples,): the quantizer's inputs
        learned = float(m.clip_level(bits).detach().abs())
        errors = {f * learned: quant_error(x, f * learned, bits, m.signed) for f in LEVEL_FACTORS}
        best = min(errors, key=errors.__getitem__)
        power = float((x if m.signed else x.clamp(min=0.0)).pow(2).mean())
        out[n] = {"learned": learned, "best": best, "mse_learned": quant_error(x, learned, bits, m.signed),
                  "mse_best": errors[best], "power": power}
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
    lines += _level_lines(measured)
    for run, r in measured.items():
        bits = sorted({int(k[1:].split("a")[0]) for k in r["grid"]}, reverse=True)
        lines += ["", f"## {run}: accuracy (%) by weight bits (rows) and activation bits (columns)", "",
                  "| weights \\ activations | " + " | ".join(f"{a}" for a in bits) + " |",
                  "| --- |" + " ---: |" * len(bits)]
        for w in bits:
            lines.append(f"| {w} | " + " | ".join(f"{r['grid'][f'w{w}a{a}'] * 100:.2f}" for a in bits) + " |")
    return "\n".join(lines) + "\n"


def _level_lines(measured: dict[str, Any]) -> list[str]:
    """The 2-bit clipping levels against the error-minimising ones, per run that measured them."""
    runs = {run: r for run, r in measured.items() if "levels" in r}
    if not runs:
        return []
    lines = ["", "## The 2-bit clipping levels: learned or error-minimising", "",
             "Each quantized input's learned 2-bit clipping level against the level (0.4x to 2x of it) "
             "that minimises the mean squared quantization error of its activations on the calibration "
             "batches (training images), and the 2-bit model scored with those levels in place of the "
             "learned ones. The errors are relative to the mean square of the activations kept (mean "
             "over layers).", "",
             "| run | relative error, learned | error-minimising | worst layer: learned / minimum error "
             "| 2 bits, learned | error-minimising levels | gain (2 s.e.) |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for run, r in runs.items():
        lv = r["levels"]
        rel = [sum(v[k] / v["power"] for v in lv.values()) / len(lv) for k in ("mse_learned", "mse_best")]
        worst = max(lv, key=lambda n: lv[n]["mse_learned"] / lv[n]["mse_best"])
        w, e = lv[worst], r["error_levels"]
        lines.append(f"| {run} | {rel[0] * 100:.1f}% | {rel[1] * 100:.1f}% | {worst} "
                     f"{w['mse_learned'] / w['mse_best']:.2f}x (level {w['learned']:.2f}, minimum at "
                     f"{w['best']:.2f}) | {r['grid']['w2a2'] * 100:.2f} | {e['accuracy'] * 100:.2f} | "
                     f"{e['gain'] * 100:+.2f} ({2 * e['se'] * 100:.2f}) |")
    return lines


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
