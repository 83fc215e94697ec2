"""`evaluate` on pipeline folders: the teacher by CFG and the student in one pass, each in its stock class.

Both draw from the same seeds and prompts (the student's distillation prompts, or `--prompts`), teacher and
student batches interleaved so that their samples/s ratio sees one machine state. Every pair gets:
- the paired error ‖x_student − x_teacher‖ / ‖x_teacher‖ at each s, beside the same error of the teacher's
  conditional samples (s = 1: what a fresh student draws), and so the share of the guidance effect the
  student reproduces;
- samples/s of both and their ratio, and grids.
A pipeline that records its dataset (`cfgdistill_data.json`, written by the Fashion-MNIST build) is also judged
by that dataset's classifier: FD, accuracy and the project's gates. No other judge needs no download.
"""

import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import EvaluateConfig
from ..data import load_dataset
from ..data.captions import captions
from ..errors import UserError
from ..guidance.sampling import DEFAULT_STEPS
from ..images import labelled_panels, save_image
from ..io import staged, write_text
from ..pretrained.export import RECORD
from ..pretrained.families import FAMILIES
from ..pretrained.prompts import read_prompts
from ..pretrained.resolve import family_of, resolve_pipeline
from ..pretrained.sampling import pipeline_arguments
from ..training.machine import machine_record
from .classifier import predict
from .compare import paired_error
from .metrics import paired_gap_se
from .report import GATES, judge_for, matches

BATCH = 100  # images per pipeline call
COLUMNS = 10  # prompts shown in the grids
CELL = (32, 128)  # the grids' smallest and largest cell in pixels
STAGE1_GATE = dict(zip(("fd_ratio", "accuracy_gap"), GATES["stage-1"]))
DOMAIN = "cfgdistill_data.json"  # a pipeline trained here names its dataset and padding, so it can be judged


class Stock:
    """A pipeline folder in its stock class, with the seconds it spent sampling and its images in [−1, 1]."""

    def __init__(self, folder: Path, crop: int):
        self.family, _, self.student = family_of(folder, students=True)
        self.pipe = FAMILIES[self.family].load(folder)
        self.pipe.set_progress_bar_config(disable=True)
        self.size = FAMILIES[self.family].call_arguments(self.pipe)  # image side (and Flux's prompt length)
        self.crop, self.seconds, self.images = crop, 0.0, []

    @torch.no_grad()
    def __call__(self, prompts: list, seeds: list, s: float, steps: int):
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        arguments = pipeline_arguments(self.family, self.student, s) | self.size
        start = time.perf_counter()
        out = self.pipe(prompts, num_inference_steps=steps, generator=generators, output_type="pt", **arguments)
        self.seconds += time.perf_counter() - start
        x, c = out.images.float().cpu() * 2 - 1, self.crop
        self.images.append(x[..., c : x.shape[-2] - c, c : x.shape[-1] - c])

    def take(self) -> tuple:
        """(the images drawn since the last take, their samples/s)."""
        images = torch.cat(self.images)
        rate, self.seconds, self.images = len(images) / self.seconds, 0.0, []
        return images, rate


def pair(teacher, student) -> tuple:
    """(teacher folder, student folder), refused with one line unless a teacher and its kind of student."""
    teacher, student = resolve_pipeline(teacher), resolve_pipeline(student)
    t_family, _, t_distilled = family_of(teacher, students=True)
    s_family, network, s_distilled = family_of(student, students=True)
    if t_distilled:
        raise UserError(f"--teacher {teacher} is guidance-distilled; pass the pipeline it was distilled from")
    if not s_distilled:
        raise UserError(f"--student {student} is not guidance-distilled: its {network} has no guidance input")
    if t_family != s_family:
        raise UserError(f"--teacher is a {t_family} pipeline and --student a {s_family} one")
    return teacher, student


def prompts_of(student: Path, config: EvaluateConfig) -> list:
    if config.prompts is not None:
        return read_prompts(config.prompts)
    try:
        return json.loads((student / RECORD).read_text())["prompts"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{student} does not record its prompts ({RECORD}): pass --prompts FILE") from None


class DomainJudge:
    """The classifier of the dataset a pipeline records, with each prompt's class from that dataset's captions."""

    def __init__(self, domain: dict, prompts: list, config: EvaluateConfig):
        names = load_dataset(domain["data"], "test").class_names
        tables = captions(domain["data"], names)  # training prompts and held-out paraphrases
        owner = {p: c for c, name in enumerate(names) for table in tables for p in table[name]}
        strange = [p for p in prompts if p not in owner]
        if strange:
            raise UserError(f"the prompt {strange[0]!r} is not a {domain['data']} caption, so no classifier judges it")
        rank = {p: sum(owner[q] == owner[p] for q in prompts[:i]) for i, p in enumerate(prompts)}
        self.prompts = sorted(prompts, key=lambda p: (rank[p], owner[p]))  # round robin: classes stay balanced
        self.labels = torch.tensor([owner[self.prompts[i % len(prompts)]] for i in range(config.n)])
        self.shape = tuple(load_dataset(domain["data"], "test").images.shape[1:])
        self.judge, _, _, disjoint, self.classifier_accuracy = judge_for(domain["data"], self.shape, len(names), config)
        self.floor = self.judge.fd(disjoint)

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """Samples at the dataset's shape: grey from RGB, resized where the pipeline draws another size."""
        x = x.mean(1, keepdim=True) if x.shape[1] == 3 and self.shape[0] == 1 else x
        return x if x.shape[-2:] == self.shape[-2:] else F.interpolate(x, self.shape[-2:], mode="area")

    def row(self, row: dict, images: dict):
        hits = []
        for name, x in images.items():
            x = self.fit(x)
            row[name] |= self.judge.quality(x, self.labels)
            hits.append(predict(self.judge.classifier, x) == self.labels)
        row["accuracy_gap_se"] = paired_gap_se(*hits)  # the gap's spread from sampling alone
        row["student_matches"] = matches(row, self.floor, STAGE1_GATE)


def draw(models: dict, prompts: list, s: float, config: EvaluateConfig) -> dict:
    """{name: (images, samples/s)} at guidance s, batches of the models interleaved."""
    for start in range(0, config.n, BATCH):
        index = range(start, min(start + BATCH, config.n))
        for model in models.values():
            model([prompts[i % len(prompts)] for i in index], [config.seed + i for i in index], s, config.steps)
    return {name: model.take() for name, model in models.items()}


def evaluate_pipelines(teacher, student, config: EvaluateConfig) -> tuple:
    """(report, {s: {model: images}}) for a teacher pipeline and its student, at every s of `config.guidance`."""
    if config.sampler is not None:
        raise UserError("a pipeline samples with its own scheduler; --sampler applies to cfgdistill checkpoints")
    config = replace(config, steps=config.steps or DEFAULT_STEPS)
    teacher, student = pair(teacher, student)
    prompts = prompts_of(student, config)
    domain = json.loads((teacher / DOMAIN).read_text()) if (teacher / DOMAIN).is_file() else None
    judge = DomainJudge(domain, prompts, config) if domain else None
    prompts = judge.prompts if judge else prompts
    crop = domain["crop"] if domain else 0
    models = {"teacher": Stock(teacher, crop), "student": Stock(student, crop)}
    every = {s: draw(models, prompts, s, config) for s in config.guidance}
    # the teacher at s = 1 is its conditional model, one pass, from the same seeds: drawn once
    conditional = every[1.0] if 1.0 in every else draw({"teacher": models["teacher"]}, prompts, 1.0, config)
    conditional = conditional["teacher"][0]
    rows, images = [], {}
    for s, drawn in every.items():
        x = {name: drawn[name][0] for name in models}
        error, reference = paired_error(x["student"], x["teacher"]), paired_error(conditional, x["teacher"])
        row = {"s": s, "paired_relative_error": error, "conditional_relative_error": reference}
        row["guidance_reproduced"] = 1 - error / reference if reference > 0 else None
        for name in models:
            row[name] = {"samples_per_s": drawn[name][1]}
        row["throughput_ratio"] = row["student"]["samples_per_s"] / row["teacher"]["samples_per_s"]
        if judge:
            judge.row(row, x)
        rows.append(row)
        images[s] = x
    report = {"teacher": str(teacher), "student": str(student), "family": models["student"].family}
    report |= {"samples_per_scale": config.n, "steps": config.steps, "seed": config.seed, "prompts": prompts}
    if judge:
        report |= {"dataset": domain["data"], "fd_noise_floor": judge.floor}
        report["classifier_held_out_accuracy"] = judge.classifier_accuracy
    return report | {"rows": rows, "machine": machine_record()}, images


def markdown(report: dict) -> str:
    judged = "fd_noise_floor" in report
    head = "| s | paired error student / conditional | guidance reproduced | samples/s teacher / student | ratio |"
    lines = [head + (" FD t / s | accuracy t / s | gap ± 2 SE | gates (FD, acc) |" if judged else "")]
    lines.append("|" + " --- |" * (9 if judged else 5))
    for r in report["rows"]:
        t, st, share = r["teacher"], r["student"], r["guidance_reproduced"]
        line = f"| {r['s']:g} | {r['paired_relative_error']:.3f} / {r['conditional_relative_error']:.3f} "
        line += f"| {'–' if share is None else f'{100 * share:.0f}%'} "
        line += f"| {t['samples_per_s']:.1f} / {st['samples_per_s']:.1f} | {r['throughput_ratio']:.2f} |"
        if judged:
            ok, gap = r["student_matches"], 100 * (t["accuracy"] - st["accuracy"])
            line += f" {t['fd']:.1f} / {st['fd']:.1f} | {100 * t['accuracy']:.1f}% / {100 * st['accuracy']:.1f}% "
            line += f"| {gap:+.1f} ± {200 * r['accuracy_gap_se']:.1f} "
            line += f"| {'yes' if ok['fd'] else 'no'}, {'yes' if ok['accuracy'] else 'no'} |"
        lines.append(line)
    tail = f"\n\n{report['samples_per_scale']} samples per s, {report['steps']} steps"
    tail += f", stock {report['family']} pipeline"
    if judged:
        tail += f"; {report['dataset']} classifier, FD noise floor {report['fd_noise_floor']:.2f}"
    return "\n".join(lines) + tail + ".\n"


def write_pipeline_report(report: dict, images: dict, out: Path):
    """report.json, report.md and samples.png (teacher and student, one row per s), appearing together."""
    k = min(COLUMNS, report["samples_per_scale"])
    panels = {
        f"{name}: {'CFG' if name == 'teacher' else '1 pass'}": torch.stack([x[name][:k] for x in images.values()])
        for name in ("teacher", "student")
    }
    rows, columns = [f"s={s:g}" for s in images], [f"prompt {i + 1}" for i in range(k)]
    cell = min(max(CELL[0], next(iter(panels.values())).shape[-1]), CELL[1])
    Path(out).mkdir(parents=True, exist_ok=True)
    with staged(out, last=("report.json",)) as stage:
        write_text(stage / "report.md", markdown(report))
        save_image(labelled_panels(panels, rows, columns, cell), stage / "samples.png")
        write_text(stage / "report.json", json.dumps(report, indent=2) + "\n")
