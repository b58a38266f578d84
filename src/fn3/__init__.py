"""fn3: Fully Nested Neural Networks (FN3) in PyTorch.

Train one network with ordered dropout and get a nested family of sub-models that drop bits,
neurons, channels, residual paths and layers; pick the best one for each hardware budget.

Example:
    >>> import torch, fn3
    >>> model = fn3.create_model("resnet20", num_classes=10, in_channels=3)
    >>> space = fn3.space(model)
    >>> spec = space.uniform({"channels": 0.5, "bits": 4})
    >>> with fn3.active(model, spec):
    ...     logits = model(torch.randn(1, 3, 32, 32))
    >>> logits.shape
    torch.Size([1, 10])
"""

from fn3 import cost, export, search
from fn3.config import TrainConfig
from fn3.convert import NestingReport, nest_
from fn3.errors import (
    BudgetError,
    ConfigError,
    DataError,
    FileFormatError,
    Fn3Error,
    NestingError,
    SpecError,
)
from fn3.evaluate import recalibrate_bn
from fn3.export import load, save
from fn3.models import create_model, list_models, register_model
from fn3.nest import active, current_spec, set_active, space
from fn3.run import load_run
from fn3.sampling import OrderedDropout, Sandwich
from fn3.spec import KINDS, Axis, Space, Spec, parse_spec
from fn3.train import fit

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "Axis",
    "BudgetError",
    "ConfigError",
    "DataError",
    "FileFormatError",
    "Fn3Error",
    "NestingError",
    "NestingReport",
    "OrderedDropout",
    "Sandwich",
    "Space",
    "Spec",
    "SpecError",
    "TrainConfig",
    "active",
    "cost",
    "create_model",
    "current_spec",
    "export",
    "fit",
    "list_models",
    "load",
    "load_run",
    "nest_",
    "parse_spec",
    "recalibrate_bn",
    "register_model",
    "save",
    "search",
    "set_active",
    "space",
]
