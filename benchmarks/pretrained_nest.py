"""A CNN pretrained the ordinary way on MNIST, nested with ``fn3.nest_``, briefly fine-tuned with ODO.

The question (issue 12): does a network someone already trained become a family of sub-models with
a short ordered-dropout fine-tune, keeping its own full-model accuracy (target: within 1 point)?

1. train a small plain CNN (3 conv + BN + ReLU, 1 linear; no fn3) with plain PyTorch;
2. ``fn3.nest_(net, x, levels=...)``: channels ranked by importance (L1 of the consuming weights),
   the full nested model checked to compute what the pretrained one did;
3. fine-tune with ordered dropout (``fn3.fit``, rule ``full+odo``) for a fraction of the pretraining;
4. search the sub-models (heuristic, FLOPs, on a validation split held out of the training set) and
   report the front's test accuracy.

    nice python benchmarks/pretrained_nest.py --data-dir ../shared/data/mnist          # ~ minutes
    nice python benchmarks/pretrained_nest.py --data-dir ../shared/data/mnist --quick  # seconds

Writes ``docs/benchmarks/pretrained_nest.md`` and ``docs/benchmarks/pretrained_nest.png``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import fn3
from fn3.config import TrainConfig
from fn3.data import batches, channel_stats, load_dataset, train_val_split
from fn3.evaluate import accuracy
from fn3.search import Evaluator, search
from fn3.search.pareto import pareto_front
from fn3.search.plot import plot_fronts
from fn3.train import evaluate_specs, fit

ROOT = Path(__file__).resolve().parents[1]


def make_cnn(width: int = 32) -> nn.Module:
    """The plain CNN a user would have: 28x28 -> 14x14 -> 7x7 -> pooled -> 10 classes."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w // 2, 3, padding=1), nn.BatchNorm2d(w // 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w // 2, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10),
    )  # fmt: skip


def pretrain(net: nn.Module, train, epochs: int, mean, std, seed: int) -> None:
    """Ordinary training: SGD with momentum, cosine learning rate, no fn3 involved."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * (len(train) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for epoch in range(epochs):
        for x, y in batches(train, 128, shuffle=True, seed=seed, epoch=epoch, mean=mean, std=std,
                            drop_last=True):  # fmt: skip
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            sched.step()
    net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data" / "mnist"))
    ap.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
    ap.add_argument("--levels", default="channels")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="pretraining epochs")
    ap.add_argument("--finetune", type=int, default=1, help="ODO fine-tuning epochs")
    ap.add_argument("--max-evals", type=int, default=24, help="sub-models scored per search strategy")
    ap.add_argument("--limit", type=int, default=1000, help="training images per class (0: all)")
    ap.add_argument("--quick", action="store_true", help="100 images per class, 1 epoch each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    limit = 100 if args.quick else (args.limit or None)
    full = load_dataset(args.dataset, "train", args.data_dir, limit=limit)
    train, val = train_val_split(full, 0.1, args.seed)
    val = val.subset(torch.arange(min(len(val), 2000)))  # enough to rank sub-models, cheap to score
    test = load_dataset(args.dataset, "test", args.data_dir)
    if args.quick:
        test = test.subset(torch.arange(1000))
    mean, std = channel_stats(train)
    test_b = list(batches(test, 500, shuffle=False, mean=mean, std=std))
    t0 = time.perf_counter()

    # 1. the ordinary model
    net = make_cnn(args.width)
    pretrain(net, train, 1 if args.quick else args.epochs, mean, std, args.seed)
    t_pre = time.perf_counter() - t0
    acc_pre = accuracy(net, test_b)
    print(f"pretrained on {len(train)} images: test accuracy {acc_pre:.4f} ({t_pre:.0f} s)", flush=True)

    # 2. nest it (importance reordering); the full nested model is the pretrained one
    plain = copy.deepcopy(net)
    x = next(iter(batches(train, 64, shuffle=False, mean=mean, std=std)))[0]
    report = fn3.nest_(net, x, levels=args.levels, verbose=False)
    net.eval()
    with torch.no_grad():
        gap = (net(x) - plain(x)).abs().max().item()
    acc_nested = accuracy(net, test_b)
    print(f"nested: {len(fn3.space(net))} axes, max |nested - pretrained| = {gap:.2e}, "
          f"test accuracy {acc_nested:.4f}", flush=True)  # fmt: skip

    # 3. a short ODO fine-tune
    epochs = 1 if args.quick else args.finetune
    cfg = TrainConfig(data=args.dataset, epochs=epochs, batch_size=128, lr=0.01, mean=mean, std=std,
                      rule="full+odo", recalibrate_batches=20, seed=args.seed)  # fmt: skip
    t1 = time.perf_counter()
    fit(net, train, cfg, progress=False)
    t_ft = time.perf_counter() - t1
    space = fn3.space(net)
    named = {"full": space.largest(), "smallest": space.smallest()}
    after = evaluate_specs(net, named, test, cfg, train)
    print(f"fine-tuned ({t_ft:.0f} s): full {after['full']:.4f}, smallest {after['smallest']:.4f}")

    # 4. search on the validation split, report test accuracy of the front
    calib = list(batches(train, 128, shuffle=True, seed=args.seed + 1, mean=mean, std=std))[:5]
    val_b = list(batches(val, 500, shuffle=False, mean=mean, std=std))
    evaluator = Evaluator(net, val_b, recalibrate=calib, num_batches=5)
    t2 = time.perf_counter()
    results = [
        search(
            net,
            evaluator,
            "flops",
            strategy,
            input_shape=(1, 28, 28),
            seed=args.seed,
            max_evals=args.max_evals,
            metrics=["bits"],
        )
        for strategy in ("uniform", "heuristic")
    ]
    t_search = time.perf_counter() - t2
    evals = sum(r.evals for r in results)
    front = pareto_front([p for r in results for p in r.points], "flops")  # both strategies' points
    front = sorted(front, key=lambda p: -p.cost("flops"))
    front = front[:: max(1, len(front) // 10)]  # about 10 points, evenly along the front
    tester = Evaluator(net, test_b, recalibrate=calib, num_batches=5)
    test_acc = tester.evaluate_many([p.spec for p in front])
    full_flops = fn3.cost(net, space.largest(), "flops", input_shape=(1, 28, 28))
    full_bits = fn3.cost(net, space.largest(), "bits", input_shape=(1, 28, 28))
    print(f"search: {evals} scored, {len(front)} front points shown ({t_search:.0f} s)", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    plot_fronts(results, args.out / "pretrained_nest.png", title=f"pretrained CNN on {args.dataset}, nested")
    rows = []
    for p, acc in zip(front, test_acc, strict=True):
        rows.append(f"| {p.cost('flops') / 1e6:.3f} | {p.cost('flops') / full_flops:.1%} | "
                    f"{p.cost('bits') / full_bits:.1%} | {p.accuracy:.2%} | {acc:.2%} |")  # fmt: skip
    sizes = f" --limit {args.limit} --epochs {args.epochs} --finetune {args.finetune}"
    cmd = f"nice python benchmarks/pretrained_nest.py --dataset {args.dataset} --levels {args.levels}" + (
        " --quick" if args.quick else sizes
    )
    drop = 100 * (acc_pre - after["full"])
    bits_note = (
        " With `bits` the nested full model is the 8-bit quantized original, so before fine-tuning"
        " it computes the float model only approximately."
        if "bits" in args.levels
        else ""
    )
    page = f"""### Pretrained CNN, nested by `fn3.nest_` and fine-tuned with ODO (`pretrained_nest`)

A plain CNN ({sum(p.numel() for p in plain.parameters()):,} parameters, 3 conv + BN + ReLU, 1 linear)
trained the ordinary way on {args.dataset} ({len(train):,} training images), then
`fn3.nest_(net, x, levels="{args.levels}")` (channels ranked by importance; {len(space)} axes,
{report.nested_params:.0%} of the parameters nested), then {cfg.epochs} epoch(s) of ODO fine-tuning
(`full+odo`, lr 0.01), then a search of {evals} sub-models (strategies `uniform` and `heuristic`,
{args.max_evals} each) on a validation split.

| stage | test accuracy |
| --- | --- |
| pretrained (plain PyTorch, {1 if args.quick else args.epochs} epochs, {t_pre:.0f} s) | {acc_pre:.2%} |
| nested, before fine-tuning (max abs. output gap {gap:.1e}) | {acc_nested:.2%} |
| nested + ODO fine-tune ({t_ft:.0f} s): full model | {after["full"]:.2%} |
| nested + ODO fine-tune: smallest sub-model | {after["smallest"]:.2%} |

Full-model accuracy after fine-tuning is {abs(drop):.2f} points {"below" if drop > 0 else "above"} the
pretrained one (target: within 1 point below): {"met" if drop <= 1.0 else "**missed**"}.{bits_note}

Searched front (both strategies' points; FLOPs per image; BatchNorm re-estimated per
sub-model on 5 training batches; validation accuracy on 2,000 held-out images chooses, test accuracy
is reported):

| MFLOPs | FLOPs vs full | bits vs full | val acc | test acc |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

![front](pretrained_nest.png)

Command: `{cmd}` (total {time.perf_counter() - t0:.0f} s on 2 shared CPU cores).
"""
    (args.out / "pretrained_nest.md").write_text(page)
    print(page)


if __name__ == "__main__":
    main()
