"""Every setting of every command, declared once, and the named recipes built on them.

kinds.py: the kinds of value and the `setting` field; loop.py, train.py, distill.py, progressive.py and
sampling.py: each command's settings; recipes.py: the named recipes; commands.py: the commands and their
default recipes; flags.py: the command line generated from all of it. No module here imports torch, so the CLI
builds its parser (and refuses a bad flag) in milliseconds.
"""

from .choices import ARCHS, LOSS_SPACES, PREDICTIONS, SAMPLERS
from .commands import COMMANDS, configure
from .distill import DistillConfig, PipelineOptions, TeacherInput
from .loop import MIXED_PRECISION, LoopConfig, RunOptions
from .progressive import ProgressiveConfig, StudentInput
from .recipes import RECIPES
from .sampling import DemoConfig, EvaluateConfig, ModelInput, PairInput, SampleConfig
from .train import ARCH_DEFAULTS, TrainConfig

__all__ = [
    "ARCHS",
    "ARCH_DEFAULTS",
    "COMMANDS",
    "LOSS_SPACES",
    "MIXED_PRECISION",
    "PREDICTIONS",
    "RECIPES",
    "SAMPLERS",
    "DemoConfig",
    "DistillConfig",
    "EvaluateConfig",
    "LoopConfig",
    "ModelInput",
    "PairInput",
    "PipelineOptions",
    "ProgressiveConfig",
    "RunOptions",
    "SampleConfig",
    "StudentInput",
    "TeacherInput",
    "TrainConfig",
    "configure",
]
