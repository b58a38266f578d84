"""How much does the Evaluator's prefix sharing (``reuse=True``) save on user models nested by fn3?

The search scores batches of specs; :func:`fn3.search._segments.segments_of` cuts any nested model's
forward (traced with ``torch.fx``) into segments so that specs sharing a prefix run it once. This
benchmark scores the same N specs with ``reuse=True`` and ``reuse=False`` (fresh Evaluator each time,
so nothing is cached), interleaved A/B/A/B so a load change on the machine hits both alike, and
prints the median wall time of each and their ratio, for two spec sets:

* ``heuristic``: a parent spec and its one-block-removed children, as the heuristic scores them
  (children differ from the parent in one block, so most of the forward is shared);
* ``random``: uniform random specs (almost nothing to share: the cost of cutting the forward).

Models (random weights: the time does not depend on what was learned): the factory CNN of
:mod:`fn3.export.user` made wider, a torchvision-style ResNet (BasicBlocks with downsample
shortcuts, in-place ReLU, ``out += identity``) and an inverted-residual MobileNet-style net, each
nested by :func:`fn3.nest_` (channels, layers and bits), and the built-in ResNet-20 for reference.

Run:  python benchmarks/search_speed.py [--reps 5] [--threads 1] [--calib]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import fn3
from fn3.export.user import example_net
from fn3.search import Evaluator
from fn3.search._segments import segments_of


class Block(nn.Module):
    """torchvision's BasicBlock: conv-bn-relu-conv-bn, ``out += identity`` (or the downsample), relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class UserResNet(nn.Module):
    def __init__(self, w: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(Block(w, w), Block(w, w), Block(w, w))
        self.layer2 = nn.Sequential(Block(w, 2 * w, 2), Block(2 * w, 2 * w), Block(2 * w, 2 * w))
        self.layer3 = nn.Sequential(Block(2 * w, 4 * w, 2), Block(4 * w, 4 * w), Block(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvRes(nn.Module):
    def __init__(self, c: int, expand: int = 4):
        super().__init__()
        h = c * expand
        self.conv = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h),
                                  nn.ReLU6(), nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.conv(x)


def mobilenet_like(c: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6(),
                         *[InvRes(c) for _ in range(4)],
                         nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU6(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, 10))


def models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    out = {}
    for name, model, shape in [("example_net (width 32)", example_net(32), (1, 16, 16)),
                               ("user ResNet (3x3 blocks)", UserResNet(), (3, 32, 32)),
                               ("user MobileNet-style", mobilenet_like(), (3, 32, 32))]:
        fn3.nest_(model, torch.randn(4, *shape), verbose=False)
        out[name] = (model.eval(), shape)
    out["resnet20 (built-in)"] = (fn3.create_model("resnet20", num_classes=10, in_channels=3,
                                                   input_size=32).eval(), (3, 32, 32))
    return out


def spec_sets(space, n: int, seed: int = 0) -> dict[str, list]:
    g = torch.Generator().manual_seed(seed)
    parent = space.sample(g, dist="uniform")
    children = [parent]
    for a in space:
        kept = parent.kept(a.name)
        if len(kept) > a.min_blocks:
            children.append(parent.with_blocks(a.name, kept[:-1]))
    step = max(1, len(children) // n)  # children spread over the whole forward, early and late axes
    return {"heuristic": children[::step][:n], "random": [space.sample(g, dist="uniform") for _ in range(n)]}


def timed(model, val, cal, specs, reuse: bool) -> tuple[float, bool]:
    ev = Evaluator(model, val, recalibrate=cal, num_batches=len(cal) if cal else 1, reuse=reuse)
    start = time.perf_counter()
    ev.evaluate_many(specs)
    return time.perf_counter() - start, ev.reuse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5, help="A/B repetitions (median reported)")
    p.add_argument("--specs", type=int, default=40, help="specs per set (N)")
    p.add_argument("--batch", type=int, default=128, help="validation images (one batch)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--calib", action="store_true", help="also re-estimate BatchNorm (2 batches of 64)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (model, shape) in models().items():
        g = torch.Generator().manual_seed(1)
        val = [(torch.randn(args.batch, *shape, generator=g),
                torch.randint(0, 10, (args.batch,), generator=g))]
        cals = [None]
        if args.calib:
            cals.append([(torch.randn(64, *shape, generator=g), torch.zeros(64, dtype=torch.long))
                         for _ in range(2)])
        segs = segments_of(model)
        for set_name, specs in spec_sets(fn3.space(model), args.specs).items():
            for cal in cals:
                times: dict[bool, list[float]] = {True: [], False: []}
                used = False
                for _ in range(args.reps):
                    for reuse in (True, False):
                        t, on = timed(model, val, cal, specs, reuse)
                        times[reuse].append(t)
                        used |= on
                on, off = statistics.median(times[True]), statistics.median(times[False])
                rows.append((name, len(segs) if segs else 0, set_name, len(specs), "yes" if cal else "no",
                             on, off, off / on, used))
                print(f"{name:26s} {set_name:9s} calib={'yes' if cal else 'no ':3s} {on:.3f}s vs {off:.3f}s "
                      f"-> {off / on:.2f}x", flush=True)
    print()
    print("| model | segments | specs | N | calib | reuse=True (s) | reuse=False (s) | ratio (False/True) |")
    print("| --- | ---: | --- | ---: | --- | ---: | ---: | ---: |")
    for name, nseg, set_name, n, cal, on, off, ratio, used in rows:
        flag = "" if used else " (reuse off: fallback)"
        print(f"| {name} | {nseg} | {set_name} | {n} | {cal} | {on:.3f} | {off:.3f} | {ratio:.2f}x{flag} |")


if __name__ == "__main__":
    main()
