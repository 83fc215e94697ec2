"""cfgdistill: classifier-free guidance and guidance distillation for diffusion models.

The public API mirrors the command line, one function per command, each taking its config dataclass:

    from cfgdistill import TrainConfig, DistillConfig, RunOptions, train_teacher, distill, sample, evaluate

Importing the package is light: torch and diffusers load on first use of a function, and nothing in the
caller's environment changes.
"""

from .config import (
    DemoConfig,
    DistillConfig,
    EvaluateConfig,
    ProgressiveConfig,
    RunOptions,
    SampleConfig,
    TrainConfig,
)
from .errors import ExtrapolationWarning, UserError

__version__ = "0.1.0"

_API = ("train_teacher", "distill", "progressive", "sample", "evaluate", "load")

__all__ = [
    *_API,
    "DemoConfig",
    "DistillConfig",
    "EvaluateConfig",
    "ExtrapolationWarning",
    "ProgressiveConfig",
    "RunOptions",
    "SampleConfig",
    "TrainConfig",
    "UserError",
]


def __getattr__(name):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'cfgdistill' has no attribute {name!r}")
