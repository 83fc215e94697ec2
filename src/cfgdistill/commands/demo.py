"""`demo`: train a teacher on the bundled digits, distill it, and compare the two side by side."""

import json
import os
import time
from pathlib import Path

import torch

from ..config import DemoConfig, DistillConfig, RunOptions, TrainConfig
from ..errors import UserError
from ..evaluation.compare import compare
from ..images import labelled_panels, save_image, tile
from ..io import check_output_dir, printable, write_text
from ..training.machine import machine_record
from .distill import distill
from .inputs import guarded
from .train import train_teacher

GRID_S = (0.0, 1.0, 2.0, 4.0)


@guarded
def run_demo(config: DemoConfig) -> dict:
    """Train, distill, then sample both at GRID_S from the same noise; returns the summary it writes."""
    config.validate()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # it writes its folders from every process
        raise UserError("demo runs in one process; under torchrun or accelerate launch, run train and distill")
    out = Path(config.out)
    check_output_dir(out, config.overwrite)
    quiet, started = config.quiet, time.perf_counter()
    precision = config.mixed_precision
    train = TrainConfig(steps=config.train_steps, objective=config.objective, mixed_precision=precision)
    teacher = train_teacher(train, RunOptions(quiet=quiet))
    teacher.save(out / "teacher", overwrite=True)
    trained = time.perf_counter()
    student = distill(
        teacher, DistillConfig(steps=config.distill_steps, mixed_precision=precision), RunOptions(quiet=quiet)
    )
    student.save(out / "student", overwrite=True)
    distilled = time.perf_counter()
    rows = compare_at_scales(teacher, student, config)
    summary = {
        "what": "teacher (CFG) vs guidance-distilled student, same noise, labels and deterministic sampler",
        "machine": machine_record(),
        "train_steps": teacher.meta.training["steps"],
        "distill_steps": student.meta.training["distill"]["steps"],
        "guidance_trained_range": student.model.config.guidance_range,
        "seconds": {"train": trained - started, "distill": distilled - trained, "total": time.perf_counter() - started},
        "per_s": rows,
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(printable(f"demo written to {out}: teacher/, student/, teacher_vs_student.png, summary.json"))
    return summary


def compare_at_scales(teacher, student, config: DemoConfig) -> list:
    """Paired error and throughput at each s of GRID_S, and the grids that show them."""
    classes, out = teacher.num_classes, Path(config.out)
    per_class = max(1, config.n // classes)
    labels = torch.arange(classes).repeat(per_class)  # the first `classes` images hold one of each class
    process = teacher.process
    compare(teacher.model, student.model, process, labels[:classes], 2.0, 2)  # warm-up, not timed
    rows, panels = [], {"teacher": [], "student": []}
    low, high = student.model.config.guidance_range
    for s in GRID_S:
        t_run, s_run, summary = compare(teacher.model, student.model, process, labels, s, config.sample_steps)
        summary["extrapolated_for_student"] = not low <= s <= high
        rows.append(summary)
        panels["teacher"].append(t_run.images[:classes])
        panels["student"].append(s_run.images[:classes])
        strongest = {"teacher": t_run.images, "student": s_run.images}
        if not config.quiet:
            print(
                f"s = {s:g}: paired error {summary['paired_relative_error']:.4f}, "
                f"student/teacher throughput {summary['throughput_ratio']:.2f}x, "
                f"NFE/image {summary['teacher_nfe_per_image']:g} vs {summary['student_nfe_per_image']:g}"
            )
    titles = {"teacher": "teacher: CFG, 2 passes/step", "student": "student: 1 pass/step (* extrapolated s)"}
    columns = [f"s={s:g}" + ("*" if row["extrapolated_for_student"] else "") for s, row in zip(GRID_S, rows)]
    grid = labelled_panels({titles[k]: torch.stack(v) for k, v in panels.items()}, columns, teacher.class_names)
    save_image(grid, out / "teacher_vs_student.png")
    for name, images in strongest.items():  # up to 10 samples per class at the largest s
        save_image(tile(images[: classes * min(per_class, 10)], ncol=classes), out / f"{name}_s{max(GRID_S):g}.png")
    return rows
