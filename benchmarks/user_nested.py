"""Bytes read from the nested file of a model of your own, per budget, against its dedicated file.

The same table as "Bytes read from the nested file" of ``benchmarks/export.py`` (built-in ResNet-20),
for a plain-PyTorch ResNet (basic blocks, 3 stages of 2, widths 32/64/128, 32x32 inputs) that
:func:`fn3.nest_` nests (channels, layers, bits) from its factory (``user_nested:resnet``), as
``fn3 train --model user_nested:resnet`` would. Random weights: the sizes do not depend on training.
For each budget: the bytes :func:`fn3.export.load_nested` reads from the ``fn3.user-nested`` file
(header included), the size of the dedicated file ``fn3.export.save`` writes for that sub-model, and
their ratio (target <= 1.1x). Every read sub-model is checked against ``fn3.export.export`` of the
full model (largest |difference| of the outputs on 4 inputs).

    python benchmarks/user_nested.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the factory: user_nested:resnet


class Block(nn.Module):
    """conv-bn-relu-conv-bn, plus the input (or its 1x1 projection), relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.down is None else self.down(x)))


def resnet(width: int = 32, classes: int = 10) -> nn.Module:
    """The benchmark's model: a stem, 3 stages of 2 basic blocks (widths w, 2w, 4w), a classifier."""
    w = (width, 2 * width, 4 * width)
    stages = [nn.Sequential(Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout))
              for i, (cin, cout) in enumerate(zip((w[0], *w[:2]), w, strict=True))]  # fmt: skip
    stem = (nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
    return nn.Sequential(*stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[2], classes))


def main(argv: list[str] | None = None) -> int:
    import fn3
    from fn3.convert.user import UserModel, build_user_model
    from fn3.export import export, load_nested, save, save_nested

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=32)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()
    desc = UserModel("user_nested:resnet", {"width": args.width}, (3, 32, 32), ("channels", "layers", "bits"))
    model = build_user_model(desc)[0].eval()
    space = fn3.space(model)
    x = torch.randn(4, 3, 32, 32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = save_nested(model, Path(tmp) / "nested.safetensors")
        size = path.stat().st_size
        for channels in (1.0, 0.75, 0.5, 0.25):
            for bits in (8, 4, 2):
                spec = space.uniform({"channels": channels, "bits": bits})
                read = load_nested(path, spec)
                ref = export(model, spec)
                dedicated = save(ref, Path(tmp) / "d.safetensors").stat().st_size
                diff = float((read.model(x) - ref(x)).abs().max())
                rows.append((f"channels {channels}, {bits} bits", read.bytes_read, dedicated, diff))
    print(f"### Bytes read from the nested file of a model of your own ({size:,} bytes) per budget\n")
    print(f"`python benchmarks/user_nested.py` (`fn3.nest_`-ed ResNet, widths {args.width}/"
          f"{2 * args.width}/{4 * args.width}, {len(space)} axes; {time.time() - t0:.0f} s)\n")  # fmt: skip
    print("| budget | bytes read | dedicated file | ratio | target (<= 1.1x) | max abs diff vs export |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, got, ded, diff in rows:
        verdict = "met" if got <= 1.1 * ded else "MISSED"
        print(f"| {label} | {got:,} | {ded:,} | {got / ded:.3f} | {verdict} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
