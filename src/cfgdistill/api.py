"""The Python API, one function per command, each taking the command's settings (config/).

A settings object comes from its class, or from a named recipe with `configure`:

teacher = train_teacher(configure(TrainConfig, "digits"), RunOptions(out="runs/teacher"))
student = distill(teacher, configure(DistillConfig, "digits"), RunOptions(out="runs/student"))
images = sample(student, SampleConfig(s=3, labels=["7"], n=8, out="sevens.png"))
evaluation = evaluate(teacher, student, EvaluateConfig(n=100, out="report"))
"""

from .checkpoint import load
from .commands.distill import distill
from .commands.evaluate import evaluate
from .commands.progressive import progressive
from .commands.sample import check_outputs, sample
from .commands.train import train_teacher
from .config import configure

__all__ = ["check_outputs", "configure", "distill", "evaluate", "load", "progressive", "sample", "train_teacher"]
