"""`distill --stop-when-matched N`: the stage-1 gates, checked on a small sample while the student trains.

Every N steps the student (its EMA weights) draws `n` samples at the ends and the middle of its trained range,
from the same seeds and labels as the teacher under the student's rule (drawn once), and the run ends once
every scale passes the gates `evaluate` applies: FD within 10% or the noise floor at this n, accuracy within
1 point. A small sample is a noisy judge; the full `evaluate` afterwards is the measurement.
"""

import torch

from ..config import EvaluateConfig
from ..pipelines.sample import generate
from .report import GATES, judge_for, matches

CHECK_N = 100  # samples per scale: about 3 s per check for the digits UNet on 2 CPU cores
CHECK_STEPS = 20


class GateCheck:
    """`check(student_model) -> bool`, against the teacher sampled by `rule` (a name and its options)."""

    def __init__(self, teacher, guidance_range: tuple, rule: dict, n: int = CHECK_N, steps: int = CHECK_STEPS):
        data = teacher.meta.data
        config = EvaluateConfig(n=n, quiet=True)
        self.judge, n, _, floor_set, _ = judge_for(data.name, tuple(data.image_shape), teacher.num_classes, config)
        self.teacher, self.rule, self.steps = teacher, rule, steps
        low, high = guidance_range
        self.scales = sorted({low, (low + high) / 2, high})
        self.labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes + 1)[:n]
        self.cond = teacher.conditioning.encode(labels=self.labels)
        self.floor = self.judge.fd(floor_set)
        self.gate = dict(zip(("fd_ratio", "accuracy_gap"), GATES["stage-1"]))
        self.teacher_quality = {}  # s -> the teacher's figures, drawn at the first check
        self.history = []  # (step, {s: passed}) of every check

    def draw(self, model, s: float, **rule) -> dict:
        images = generate(model, self.teacher.process, self.cond, s=s, steps=self.steps, **rule)
        return self.judge.quality(images, self.labels)

    def __call__(self, student, step: int) -> bool:
        device = next(student.parameters()).device
        passed = {}
        for s in self.scales:
            if s not in self.teacher_quality:
                self.teacher_quality[s] = self.draw(self.teacher.model.to(device), s, **self.rule)
            row = {"teacher": self.teacher_quality[s], "student": self.draw(student, s)}
            passed[s] = all(matches(row, self.floor, self.gate).values())
            if not passed[s]:
                break  # one scale missed: the others need not be drawn
        self.history.append({"step": step, "passed": {f"{s:g}": ok for s, ok in passed.items()}})
        return len(passed) == len(self.scales) and all(passed.values())
