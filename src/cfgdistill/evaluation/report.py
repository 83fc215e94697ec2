"""`evaluate`: quality against guidance scale for teacher (guided) and student, side by side."""

from dataclasses import asdict, dataclass, replace

import torch
from tqdm.auto import tqdm

from ..config import EvaluateConfig
from ..data import load_dataset
from ..errors import UserError
from ..guidance.sampling import DEFAULT_STEPS, generate
from ..networks import takes_negative
from ..training.machine import machine_record
from .classifier import load_classifier, predict
from .compare import learnt_rule, nearest_scale, paired_error, timed_sample
from .metrics import (
    ACCURACY_TOLERANCE,
    FrechetDistance,
    accuracy,
    embed,
    paired_gap_se,
    per_class_accuracy,
    precision_recall,
    saturation,
    within_class_distance,
)
from .negatives import negative_avoidance
from .nfe import CURVES, NFE_S, fewstep_family, nfe_curves
from .paraphrases import MODELS, PARAPHRASE_S, encoder_limit, held_out_paraphrases


@dataclass
class Evaluation:
    report: dict  # JSON-able figures only
    grids: dict  # model -> (scales × classes × C×H×W) samples, one per class at each s
    paraphrase_grids: dict | None = None  # text models: one sample per held-out prompt and model


@dataclass
class Judge:
    """What every evaluated scale is measured against: a classifier, its features of held-out real images."""

    classifier: object
    fd: FrechetDistance
    real_features: torch.Tensor

    def quality(self, images, labels) -> dict:
        features = embed(self.classifier, images)
        precision, recall = precision_recall(self.real_features, features)
        return {
            "fd": self.fd(images),
            "accuracy": accuracy(self.classifier, images, labels),
            "within_class_distance": within_class_distance(features, labels),
            "precision": precision,
            "recall": recall,
            "saturation": saturation(images),
        }


# (FD ratio, accuracy gap): a one-pass student matches its teacher at the same steps within 10% and 1 point; a
# few-step student, against the teacher at the steps its rounds started from, within 25% and 2 points.
GATES = {"stage-1": (1.10, 0.01), "few-step": (1.25, 0.02)}


def gate_of(student) -> dict:
    return dict(zip(("fd_ratio", "accuracy_gap"), GATES["few-step" if student.grid else "stage-1"]))


def matches(row: dict, fd_noise_floor: float, gate: dict) -> dict:
    """The student matches the teacher when its FD is within the gate's ratio or the noise floor, and its
    accuracy within the gate's points."""
    t, s = row["teacher"], row["student"]
    return {
        "fd": s["fd"] <= t["fd"] + max((gate["fd_ratio"] - 1) * t["fd"], fd_noise_floor),
        "accuracy": abs(s["accuracy"] - t["accuracy"]) <= gate["accuracy_gap"] + ACCURACY_TOLERANCE,
    }


def scale_row(judge: Judge, teacher, student, cond, labels, s, config: EvaluateConfig) -> tuple:
    """Both models at one s from the same noise: (figures, {model: images})."""
    runs = {}
    for name, ckpt in zip(MODELS, (teacher, student)):
        steps = own_steps(ckpt, config.steps)  # a few-step student keeps its own grid
        runs[name] = timed_sample(
            ckpt.model, ckpt.process, cond, s, steps, config.sampler, config.seed, **learnt_rule(student)
        )
    low, high = student.model.config.guidance_range
    row = {
        "s": s,
        "extrapolated": not low <= s <= high,
        "paired_relative_error": paired_error(runs["student"].images, runs["teacher"].images),
    }
    for name, run in runs.items():
        row[name] = judge.quality(run.images, labels)
        row[name].update(samples_per_s=run.samples_per_second, nfe_per_image=run.nfe_per_image)
    row["throughput_ratio"] = row["student"]["samples_per_s"] / row["teacher"]["samples_per_s"]
    hits = [predict(judge.classifier, runs[name].images) == labels for name in MODELS]
    row["accuracy_gap_se"] = paired_gap_se(*hits)  # the gap's spread from sampling alone: is a miss noise?
    for name, hit in zip(MODELS, hits):  # where a gap comes from: one hard class, or all of them
        row[name]["per_class_accuracy"] = per_class_accuracy(hit, labels, teacher.num_classes)
    return row, {name: run.images for name, run in runs.items()}


def own_steps(checkpoint, steps: int):
    """A few-step student's own grid (the teacher keeps `steps`), else `steps`."""
    return checkpoint.grid or steps


def fewstep_curves(judge, teacher, student, cond, labels, config, drawn: dict) -> dict:
    """FD against network evaluations at s = 3 for the teacher, the stage-1 student and every round."""
    stage1, rounds = fewstep_family(student)

    def draw(name, ckpt, s, steps):
        if name == CURVES[0] and steps == config.steps and s in drawn["teacher"]:
            return drawn["teacher"][s]  # already drawn for the rows
        args = dict(s=s, steps=steps, sampler=config.sampler, seed=config.seed, **learnt_rule(student))
        return generate(ckpt.model, ckpt.process, cond, **args)

    curves = nfe_curves(lambda images: judge.quality(images, labels), draw, teacher, stage1, rounds)
    return {"s": NFE_S, "stage1": str(stage1.path) if stage1 else None, "curves": curves}


def make_judge(teacher, config: EvaluateConfig) -> tuple:
    """(judge, n, the real held-out split, a disjoint real set of n for the FD noise floor, classifier accuracy)."""
    data = teacher.meta.data
    return judge_for(data.name, tuple(data.image_shape), teacher.num_classes, config)


def judge_for(data_name: str, image_shape: tuple, num_classes: int, config: EvaluateConfig) -> tuple:
    """`make_judge` for any model of a dataset, a cfgdistill checkpoint or a pipeline."""
    real = load_dataset(data_name, "test", image_shape)
    n = min(config.n, len(real))
    if n < 2 * num_classes:  # the within-class distance and kNN precision need two images per class
        raise UserError(
            f"--n {n} is too few: {num_classes} classes need at least {2 * num_classes} "
            "samples per scale (two per class)"
        )
    classifier, classifier_accuracy = load_classifier(data_name, not config.quiet, image_shape)
    train_images = load_dataset(data_name, "train", image_shape).images  # disjoint from the held-out split
    order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(config.seed))
    judge = Judge(classifier, FrechetDistance(classifier, real.images[:n]), embed(classifier, real.images[:n]))
    return judge, n, real, train_images[order[:n]], classifier_accuracy


def paraphrase_study(judge: Judge, teacher, student, config: EvaluateConfig, n: int, rows: list) -> tuple:
    """A text model's held-out paraphrases (summary, grids), with the encoder's limit from the rows; else Nones."""
    if teacher.conditioning.kind != "text":
        return None, None
    args = (teacher, student, judge.classifier, config.steps, config.sampler, config.seed, n)
    paraphrases, grids = held_out_paraphrases(*args)
    for row in (row for row in rows if row["s"] == PARAPHRASE_S):
        for name in MODELS:
            paraphrases[f"{name}_encoder_limit"] = encoder_limit(
                paraphrases["per_prompt"], teacher.class_names, row[name]["per_class_accuracy"]
            )
    return paraphrases, grids


def evaluate(teacher, student, config: EvaluateConfig | None = None) -> Evaluation:
    """Metrics per s for teacher and student at the same steps, seeds and labels, against the held-out real split."""
    config = (config or EvaluateConfig()).validate()
    config = replace(config, steps=config.steps or student.start_steps or DEFAULT_STEPS)
    judge, n, real, floor_set, classifier_accuracy = make_judge(teacher, config)
    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes + 1)[:n]
    cond = teacher.conditioning.encode(labels=labels)  # a text model gets each class's first prompt
    rows, grids, images = [], {name: [] for name in MODELS}, {name: {} for name in MODELS}
    for s in tqdm(config.guidance, desc="evaluate", disable=config.quiet):
        row, samples = scale_row(judge, teacher, student, cond, labels, s, config)
        rows.append(row)
        for name in MODELS:
            grids[name].append(samples[name][: teacher.num_classes])
            images[name][s] = samples[name]
    floor = judge.fd(floor_set)
    for row in rows:
        row["student_matches"] = matches(row, floor, gate_of(student))
        row["nearest_teacher_s"] = nearest_scale(images["student"][row["s"]], images["teacher"])
    paraphrases, paraphrase_grids = paraphrase_study(judge, teacher, student, config, n, rows)
    report = {
        "dataset": teacher.meta.data.name,
        "class_names": teacher.class_names,
        "samples_per_scale": n,
        "steps": config.steps,
        "student_steps": len(student.grid or range(config.steps)),
        "gate": gate_of(student),
        "guidance_rule": asdict(student.meta.guidance),  # the teacher is sampled by the rule the student learnt
        "sampler": config.sampler or teacher.process.default_sampler,
        "seed": config.seed,
        "student_trained_range": list(student.model.config.guidance_range),
        "classifier_held_out_accuracy": classifier_accuracy,
        "real_accuracy": accuracy(judge.classifier, real.images[:n], real.labels[:n]),
        "fd_noise_floor": floor,
        "rows": rows,
        "held_out_paraphrases": paraphrases,
        "negatives": negative_avoidance(
            teacher, student, judge.classifier, n, config.steps, config.sampler, config.seed
        )
        if takes_negative(student.model)
        else None,
        "fd_vs_nfe": fewstep_curves(judge, teacher, student, cond, labels, config, images) if student.grid else None,
        "machine": machine_record(),
    }
    return Evaluation(report, {name: torch.stack(g) for name, g in grids.items()}, paraphrase_grids)
