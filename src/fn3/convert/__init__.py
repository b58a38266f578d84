"""Bring your own network: :func:`nest_` makes an ordinary PyTorch model fully nested.

See :mod:`fn3.convert.convert` for the steps and ``docs/convert.md`` for the recipe with pretrained
weights.
"""

from fn3.convert.convert import nest_
from fn3.convert.report import GroupRow, NestingReport

__all__ = ["GroupRow", "NestingReport", "nest_"]
