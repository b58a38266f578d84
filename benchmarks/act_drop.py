"""What does dropping activation quantization at deployment cost in accuracy, and gain in speed?

``fn3.export.float_twin(exported)`` is an exported sub-model without its activation quantizers: the same
layers, the weights still on their ``c``-bit grid (dequantized), float activations (a ReLU where an
unsigned quantizer clipped at 0). It runs at the speed of the float sub-model of the spec (see
``benchmarks/export.py``), so it is the fast deployment when its accuracy is good enough. This script
trains the ``fn3 demo`` network (a small ResNeXt nested in channels, paths, layers and bits, on
scikit-learn's bundled 8x8 digits, ~1 minute), exports sub-models at 8, 4 and 2 bits (all and half of
the channels; BatchNorm re-estimated per spec as ``fn3 export`` does) and reports the test accuracy of
each export with and without its activation quantizers.

    python benchmarks/act_drop.py            # trains 8 epochs
    python benchmarks/act_drop.py --quick    # 1 epoch, a smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from fn3.demo import DEMO_CONFIG
from fn3.export import evaluate_exported, export_run, float_twin, load
from fn3.run import load_run, train_run

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one epoch: a smoke test")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # 8x8 inputs: one thread is the fastest and steadiest
    epochs = 1 if args.quick else DEMO_CONFIG.epochs
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        train_run(DEMO_CONFIG.replace(epochs=epochs), Path(d) / "run", progress=False)
        run = load_run(Path(d) / "run")
        for bits in (8, 4, 2):
            for channels in (1.0, 0.5):
                spec = run.space.uniform({"bits": bits, "channels": channels})
                out = Path(d) / f"e{bits}_{channels}"
                export_run(run, spec, out)
                q = load(out)
                label = f"{bits} bits" + ("" if channels == 1 else f", channels {channels}")
                rows.append((label, evaluate_exported(q), evaluate_exported(float_twin(q))))
    lines = [
        "| sub-model | exported (quantized activations) | without activation quantization | change |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {s} | {q:.2%} | {f:.2%} | {100 * (f - q):+.2f} pt |" for s, q, f in rows]
    text = f"""# Dropping activation quantization at deployment

`python benchmarks/act_drop.py{" --quick" if args.quick else ""}`: the `fn3 demo` network (ResNeXt on
the 8x8 digits, {epochs} epochs, default rule), each sub-model exported as `fn3 export` does (BatchNorm
re-estimated for the spec) and scored on the test split with its activation quantizers and without them
(`fn3.export.float_twin`: weights still on their c-bit grid, float activations); {time.time() - t0:.0f} s.

{chr(10).join(lines)}

The network was trained with its activations quantized at every bit-width it was sampled at, so
dropping the quantizers feeds it activations it never saw (unclipped, unrounded), which can cost
accuracy; but a coarse activation grid costs accuracy too, so the change can go either way (read the
table: at 2 bits the float activations may score higher than the 2-bit ones). Either way the model
without its quantizers runs at the speed of the float sub-model (`benchmarks/export.py`); measure the
change on your own data before deploying that way.
"""
    print(text)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "act_drop.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
