"""`cfgdistill demo`: train a teacher on the bundled digits, distill it, and compare the two side by side."""

import json
import platform
import time
from pathlib import Path

import torch

from .checkpoint import check_output_dir
from .distill import DistillConfig, distill
from .evaluation.compare import compare
from .images import labelled_panels, save_image, tile
from .loop import RunOptions
from .train import TrainConfig, train_teacher

GRID_S = (0.0, 1.0, 2.0, 4.0)
TRAIN_STEPS = 1200
DISTILL_STEPS = 600


def run_demo(args):
    out = Path(args.out)
    check_output_dir(out, args.overwrite)
    progress = not args.quiet
    started = time.perf_counter()
    teacher = train_teacher(TrainConfig(steps=args.train_steps or TRAIN_STEPS), run=RunOptions(progress=progress))
    teacher.save(out / "teacher", overwrite=True)
    trained = time.perf_counter()
    student = distill(teacher, DistillConfig(steps=args.distill_steps or DISTILL_STEPS), run=RunOptions(progress=progress))
    student.save(out / "student", overwrite=True)
    distilled = time.perf_counter()

    classes = teacher.num_classes
    per_class = max(1, args.n // classes)
    labels = torch.arange(classes).repeat(per_class)  # the first `classes` images hold one of each class
    schedule = teacher.noise_schedule
    compare(teacher.model, student.model, schedule, labels[:classes], 2.0, 2)  # warm-up, not timed
    rows, teacher_rows, student_rows = [], [], []
    low, high = student.model.config.guidance_range
    for s in GRID_S:
        t_run, s_run, summary = compare(teacher.model, student.model, schedule, labels, s, args.sample_steps)
        summary["extrapolated_for_student"] = not low <= s <= high
        rows.append(summary)
        teacher_rows.append(t_run.images[:classes])
        student_rows.append(s_run.images[:classes])
        if s == max(GRID_S):
            strongest = {"teacher": t_run.images, "student": s_run.images}
        if progress:
            print(
                f"s = {s:g}: paired error {summary['paired_relative_error']:.4f}, "
                f"student/teacher throughput {summary['throughput_ratio']:.2f}x, "
                f"NFE/image {summary['teacher_nfe_per_image']:g} vs {summary['student_nfe_per_image']:g}"
            )

    names = teacher.meta["conditioning"]["class_names"]
    grid = labelled_panels(
        {"teacher: CFG, 2 passes/step": torch.stack(teacher_rows), "student: 1 pass/step (* extrapolated s)": torch.stack(student_rows)},
        [f"s={s:g}" + ("*" if row["extrapolated_for_student"] else "") for s, row in zip(GRID_S, rows)], names,
    )
    save_image(grid, out / "teacher_vs_student.png")
    for name, images in strongest.items():  # up to 10 samples per class at the largest s
        save_image(tile(images[: classes * min(per_class, 10)], ncol=classes), out / f"{name}_s{max(GRID_S):g}.png")

    summary = {
        "what": "teacher (CFG) vs guidance-distilled student, same noise, labels and deterministic sampler",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch_threads": torch.get_num_threads()},
        "train_steps": teacher.meta["training"]["steps"],
        "distill_steps": student.meta["training"]["distill"]["steps"],
        "guidance_trained_range": student.model.config.guidance_range,
        "seconds": {"train": trained - started, "distill": distilled - trained, "total": time.perf_counter() - started},
        "per_s": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"demo written to {out}: teacher/, student/, teacher_vs_student.png, summary.json")
