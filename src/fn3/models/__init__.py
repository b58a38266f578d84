"""Registered nested models: ``mlp``, ``resnet20/32/56``, ``resnext_tiny`` (see :func:`fn3.list_models`)."""

from fn3.models import mlp as _mlp  # noqa: F401  (registers)
from fn3.models import resnet as _resnet  # noqa: F401  (registers)
from fn3.models.registry import create_model, list_models, model_levels, register_model

__all__ = ["create_model", "list_models", "model_levels", "register_model"]
