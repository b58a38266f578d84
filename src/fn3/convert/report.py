"""`NestingReport`: what :func:`fn3.nest_` did to each channel group, printed as a table.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import fn3
    >>> net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    >>> report = fn3.nest_(net, torch.zeros(1, 4), levels=("neurons",), verbose=False)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    group    size  axis               why frozen
    input       4  -                  the model input
    0.width    32  0.width (neurons)  -
    2.width     2  -                  the model output
    nested: 1 axis, 100.0% of the parameters
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GroupRow", "NestingReport"]


@dataclass(frozen=True)
class GroupRow:
    """One channel group: its name, width, the axis it became (``None``: frozen) and why not."""

    group: str
    size: int
    axis: str | None
    kind: str | None
    frozen: str | None
    modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class NestingReport:
    """Every group of a nested model, the ``layers`` axes, notes, and the share of nested parameters."""

    rows: tuple[GroupRow, ...]
    layers: tuple[tuple[str, int], ...] = ()
    nested_params: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    orders: dict[str, list[int]] = field(default_factory=dict)  # axis -> unit order applied
    bits: tuple[str, ...] = ()  # the weight- and activation-bits axes
    signed: tuple[str, ...] = ()  # layers whose activation quantizer is signed

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the axes that were created (groups, then layers)."""
        return tuple(r.axis for r in self.rows if r.axis) + tuple(n for n, _ in self.layers) + self.bits

    @property
    def frozen(self) -> tuple[GroupRow, ...]:
        """The groups that stayed at full width."""
        return tuple(r for r in self.rows if r.axis is None)

    def __str__(self) -> str:
        table = [("group", "size", "axis", "why frozen")]
        for r in self.rows:
            table.append((r.group, str(r.size), f"{r.axis} ({r.kind})" if r.axis else "-", r.frozen or "-"))
        for name, size in self.layers:
            table.append((name, str(size), f"{name} (layers)", "-"))
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        lines = [
            f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in table
        ]
        n = len(self.axes)
        share = f"{100 * self.nested_params:.1f}% of the parameters"
        bits = f" ({len(self.bits)} of them bits)" if self.bits else ""
        lines.append(f"nested: {n} ax{'is' if n == 1 else 'es'}{bits}, {share}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the nesting plan a run directory stores)."""
        return {
            "format": "fn3.nesting-report",
            "version": 1,
            "groups": [
                {"group": r.group, "size": r.size, "axis": r.axis, "kind": r.kind, "frozen": r.frozen,
                 "modules": list(r.modules)}
                for r in self.rows
            ],
            "layers": [{"axis": n, "size": s} for n, s in self.layers],
            "bits": list(self.bits),
            "signed": list(self.signed),
            "nested_params": self.nested_params,
            "notes": list(self.notes),
            "orders": self.orders,
        }
