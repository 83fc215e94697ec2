"""cfgdistill: classifier-free guidance and guidance distillation for diffusion models.

The public API mirrors the command line, one function per command, each taking its settings, made from a
named recipe with `configure` (the command line's `--recipe`) or from the class itself:

    from cfgdistill import DistillConfig, RunOptions, configure, distill
    student = distill("runs/teacher", configure(DistillConfig, "digits", steps=300), RunOptions(out="runs/s"))

Importing the package is light: torch and diffusers load on first use of a function, and nothing in the
caller's environment changes.
"""

from .config import (
    RECIPES,
    DemoConfig,
    DistillConfig,
    EvaluateConfig,
    ProgressiveConfig,
    RunOptions,
    SampleConfig,
    TrainConfig,
    configure,
)
from .errors import ExtrapolationWarning, UserError

__version__ = "0.1.0"

_API = ("train_teacher", "distill", "progressive", "sample", "evaluate", "load")

__all__ = [
    *_API,
    "RECIPES",
    "configure",
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
