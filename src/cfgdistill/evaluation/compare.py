"""Side-by-side measurements of teacher (CFG) and student sampling from the same noise."""

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from ..guidance.autoguide import load_guide
from ..guidance.sampling import generate


def paired_error(x_student: torch.Tensor, x_teacher: torch.Tensor) -> float:
    """‖x_student − x_teacher‖ / ‖x_teacher‖ over the whole set of paired samples."""
    return float((x_student - x_teacher).norm() / x_teacher.norm())


def nearest_scale(x_student: torch.Tensor, teacher_by_s: dict) -> float:
    """The s whose teacher samples (same noise, same labels) lie nearest the student's: the guidance it really applies.

    A student can pass FD and accuracy checks while drawing what the teacher draws at a lower s.
    """
    return min(teacher_by_s, key=lambda s: (x_student - teacher_by_s[s]).square().mean().item())


@contextmanager
def count_rows(model):
    """Count the images that pass through the network: one per image per network evaluation."""
    counter = {"rows": 0}
    handle = model.register_forward_pre_hook(
        lambda module, args: counter.__setitem__("rows", counter["rows"] + args[0].shape[0])
    )
    try:
        yield counter
    finally:
        handle.remove()


@dataclass
class Run:
    images: torch.Tensor
    seconds: float
    nfe_per_image: float

    @property
    def samples_per_second(self) -> float:
        return len(self.images) / self.seconds


def timed_sample(model, process, cond, s, steps, sampler=None, seed=0, batch_size=256, **rule) -> Run:
    """Sample once, measuring wall time and network evaluations per image; `rule`: a teacher's `rule` and
    `options` (see `learnt_rule`)."""
    args = dict(s=s, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, **rule)
    networks = [model, *[guide for guide in [(rule.get("options") or {}).get("guide")] if guide is not None]]
    with ExitStack() as stack:
        counters = [stack.enter_context(count_rows(network)) for network in networks]  # autoguidance: both
        start = time.perf_counter()
        images = generate(model, process, cond, **args)
        seconds = time.perf_counter() - start
    return Run(images, seconds, sum(c["rows"] for c in counters) / len(cond))


GUIDES = {}  # guide folder -> its loaded model: an evaluation asks for it at every s


def learnt_rule(student) -> dict:
    """The rule a student learnt, and its options: what its teacher is sampled with to compare the two
    (autoguidance: with the guide model the student learnt with, loaded once)."""
    guidance = student.meta.guidance
    options = dict(guidance.options or {})
    if guidance.guide_model:
        if guidance.guide_model not in GUIDES:
            GUIDES[guidance.guide_model] = load_guide(student, guidance.guide_model).model
        options["guide"] = GUIDES[guidance.guide_model]
    return {"rule": guidance.rule, "options": options}


def compare(teacher, student, process, labels, s, steps, sampler=None, seed=0, batch_size=256) -> tuple:
    """Teacher and student at the same s, steps, seeds and labels; returns (teacher run, student run, summary)."""
    args = dict(s=s, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size)
    t_run = timed_sample(teacher, process, labels, **args)
    s_run = timed_sample(student, process, labels, **args)
    summary = {
        "s": s,
        "n": len(labels),
        "steps": steps,
        "sampler": sampler or process.default_sampler,
        "paired_relative_error": paired_error(s_run.images, t_run.images),
        "teacher_samples_per_s": t_run.samples_per_second,
        "student_samples_per_s": s_run.samples_per_second,
        "throughput_ratio": s_run.samples_per_second / t_run.samples_per_second,
        "teacher_nfe_per_image": t_run.nfe_per_image,
        "student_nfe_per_image": s_run.nfe_per_image,
    }
    return t_run, s_run, summary
