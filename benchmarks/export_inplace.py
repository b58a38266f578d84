"""What computing quantized activations in place buys the exported PyTorch model.

``fn3.export.export`` returns a model whose quantized layers are ``QuantInput`` pairs; at the first
call ``fn3.nn.act_quant.plan_in_place`` reads the model's ``torch.fx`` graph and lets a quantizer
overwrite its input where nothing else reads it (the second convolution of each ResNet block). The
float twin (``fn3.export.float_twin``) gets the same for the ReLU standing in for the quantizer.

Side by side in one run (ResNet-20, 32x32, random weights, batch 64, one thread, interleaved
repeats, medians of thread CPU time): the quantized and the float export, each planned (fn3's
default) and with every pair out of place (the export before this change). The in-place version is
the baseline's speed-up; the quantized / float ratio is what issue 14 measures.

    python benchmarks/export_inplace.py            # about two minutes
    python benchmarks/export_inplace.py --quick    # seconds, smoke test
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch

import fn3
import fn3.export as fx
from fn3.export.twin import float_twin
from fn3.nn.act_quant import QuantInput

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export import table, timings  # noqa: E402 - the same interleaved timer as the export benchmark

ROOT = Path(__file__).resolve().parents[1]
SPECS = ("bits=8", "bits=4", "bits=2", "bits=4,channels=0.5")


def out_of_place(exported: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``exported`` whose quantizers (or ReLUs) never overwrite their input."""
    twin = copy.deepcopy(exported)
    twin._planned = True  # plan_in_place never runs
    for pair in twin.modules():
        if isinstance(pair, QuantInput):
            pair.inplace = False
    return twin


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, 3 repeats: a smoke test")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    batch, repeats = (8, 3) if args.quick else (64, 30)
    model = fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=32,
                             levels=("channels", "layers", "bits")).eval()
    load0 = os.getloadavg()[0]
    rows = []
    for text in SPECS:
        q = fx.export(model, fn3.parse_spec(text, fn3.space(model)))
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            q(x)  # plans
        f = float_twin(q)
        models = {"q": q, "q_out": out_of_place(q), "f": f, "f_out": out_of_place(f)}
        with torch.no_grad():
            ref = {k: m(x) for k, m in models.items()}
            t = timings({k: (lambda m=m, x=x: m(x)) for k, m in models.items()}, repeats)
        marked = sum(p.inplace for p in q.modules() if isinstance(p, QuantInput))
        pairs = sum(isinstance(p, QuantInput) for p in q.modules())
        ms = {k: v[0] * 1e3 for k, v in t.items()}
        rows.append([
            text, f"{marked} of {pairs}",
            f"{ms['q']:.1f} vs {ms['q_out']:.1f} ({ms['q'] / ms['q_out']:.3f})",
            f"{ms['f']:.1f} vs {ms['f_out']:.1f} ({ms['f'] / ms['f_out']:.3f})",
            f"{ms['q'] / ms['f']:.3f}", f"{ms['q_out'] / ms['f_out']:.3f}",
            "yes" if torch.equal(ref["q"], ref["q_out"]) and torch.equal(ref["f"], ref["f_out"]) else "NO",
        ])
    md = table(["sub-model", "pairs in place", "quantized ms: in place vs not (ratio)",
                "float ms: in place vs not (ratio)", "quantized / float, in place",
                "quantized / float, not in place", "same outputs"], rows)
    text = f"""# Quantizers in place (PyTorch export)

`python benchmarks/export_inplace.py{" --quick" if args.quick else ""}` (ResNet-20, 32x32, random
weights, batch {batch}, one thread, {repeats} interleaved repeats, medians of thread CPU time; load
average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on 2 cores shared with other jobs).

{md}

"In place": the export as `fn3.export.export` returns it (`plan_in_place` at the first call); "not":
every `QuantInput` out of place, as exports were before. The float twin's ReLU runs in place at the
same sites as the quantizer, so the quantized / float ratio of issue 14 compares like with like.
"""
    print(text)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "export_inplace.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
