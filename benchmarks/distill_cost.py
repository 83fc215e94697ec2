"""Distillation cost: the project's gates against the number of distillation steps, as a share of the teacher's
training time.

    python benchmarks/distill_cost.py --teacher demo-out/teacher --steps 50,100,200,400,600 \\
        [--guidance 1,2,4,6] [--n 360] [--sample-steps 25] [--recipe NAME] \\
        [--set s_one_share=0.25 --set mixed_precision=no ...] [--teacher-seconds S] --out OUT.json

Each point is a fresh `distill` of that many steps (the cosine schedule spans the run), then `evaluate`
against the teacher. The teacher's time is measured here by training its recipe again, unless
--teacher-seconds gives it (for example from its TensorBoard log).
"""

import argparse
import json
import time
from pathlib import Path

from cfgdistill import (
    RECIPES,
    DistillConfig,
    EvaluateConfig,
    RunOptions,
    TrainConfig,
    distill,
    evaluate,
    load,
    train_teacher,
)
from cfgdistill.training.machine import machine_record


def number(key: str, text: str):
    """A --set value as its DistillConfig field's type (steps=4 an int, lr=1e-4 a float), else the text."""
    kind = DistillConfig.__dataclass_fields__[key].type
    try:
        return int(text) if kind in (int, "int") else float(text)
    except ValueError:
        return text


def floats(text: str) -> list:
    return [float(v) for v in text.split(",")]


def teacher_seconds(teacher, precision: str) -> float:
    """Wall time of training the teacher's own recipe once more, on this machine, now, under the students'
    precision setting (`auto` by default), so that both sides may use what this machine runs fastest."""
    recipe = {k: v for k, v in teacher.meta.training.items() if k in TrainConfig.__dataclass_fields__}
    recipe["mixed_precision"] = precision
    started = time.perf_counter()
    train_teacher(TrainConfig(**recipe), RunOptions(quiet=True))
    return time.perf_counter() - started


def point(teacher, steps: int, recipe: dict, args) -> dict:
    config = DistillConfig(**{**recipe, "steps": steps})
    started = time.perf_counter()
    student = distill(teacher, config, RunOptions(quiet=True))
    seconds = time.perf_counter() - started
    report = evaluate(
        teacher, student, EvaluateConfig(guidance=args.guidance, steps=args.sample_steps, n=args.n, quiet=True)
    ).report
    rows = [
        {
            "s": row["s"],
            **row["student_matches"],
            "fd_ratio": row["student"]["fd"] / row["teacher"]["fd"],
            "accuracy_gap": row["student"]["accuracy"] - row["teacher"]["accuracy"],
            "accuracy_gap_se": row["accuracy_gap_se"],
        }
        for row in report["rows"]
    ]
    passed = all(r["fd"] and r["accuracy"] for r in rows)
    print(f"{steps} steps, {seconds:.0f} s: {'all gates' if passed else 'gates missed'}", flush=True)
    result = {"steps": steps, "seconds": seconds, "precision": config.mixed_precision, "passed": passed, "rows": rows}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--steps", type=lambda t: [int(v) for v in t.split(",")], required=True)
    parser.add_argument("--guidance", type=floats, default=[1.0, 2.0, 4.0, 6.0])
    parser.add_argument("--n", type=int, default=360)
    parser.add_argument("--sample-steps", type=int, default=25)
    parser.add_argument("--recipe", choices=sorted(RECIPES))
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE of DistillConfig")
    parser.add_argument("--teacher-seconds", type=float)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    teacher = load(args.teacher)
    recipe = RECIPES[args.recipe].values("distill") if args.recipe else {}
    recipe |= {key: number(key, value) for key, value in (pair.split("=", 1) for pair in args.set)}
    points = [point(teacher, steps, recipe, args) for steps in args.steps]
    seconds = args.teacher_seconds or teacher_seconds(teacher, recipe.get("mixed_precision", "auto"))
    for p in points:
        p["share_of_teacher"] = p["seconds"] / seconds
    first = next((p for p in points if p["passed"]), None)
    result = {
        "teacher": args.teacher,
        "teacher_seconds": seconds,
        "teacher_seconds_measured_here": args.teacher_seconds is None,
        "recipe": recipe,
        "guidance": args.guidance,
        "n": args.n,
        "first_passing": None if first is None else {k: first[k] for k in ("steps", "seconds", "share_of_teacher")},
        "points": points,
        "machine": machine_record(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=2))


if __name__ == "__main__":
    main()
