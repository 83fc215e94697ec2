"""Few-step students against the CFG teacher at 64 steps: gates per round, FD against NFE, speed, grids.

    python benchmarks/fewstep.py --models demo-out --fewstep runs/fewstep --out docs/results/fewstep

`--models` holds the teacher and the stage-1 student (`cfgdistill demo`), `--fewstep` a `cfgdistill
progressive` run from that student (`rounds/steps-N/`). Every model draws from the same seeds and labels.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from cfgdistill import EvaluateConfig, load
from cfgdistill.evaluation.classifier import predict
from cfgdistill.evaluation.metrics import FrechetDistance, paired_gap_se
from cfgdistill.evaluation.nfe import NFE_S, nfe_curves, plot_nfe
from cfgdistill.evaluation.report import GATES, judge_for, matches
from cfgdistill.guidance.sampling import generate
from cfgdistill.images import labelled_panels, save_image
from cfgdistill.training.machine import machine_record

GATE_S = (1.0, 2.0, 3.0, 5.0)
TEACHER_STEPS = 64
GRID_S, GRID_STEPS = (1.0, 3.0, 5.0), (8, 4, 2, 1)
FD_RATIO, ACCURACY_GAP = GATES["few-step"]  # FD within 25% (or the noise floor), accuracy within 2 points
GATE = {"fd_ratio": FD_RATIO, "accuracy_gap": ACCURACY_GAP}
STOCHASTIC_STEPS = (1, 2, 4)  # Meng's stochastic sampler against the deterministic one


class Bench:
    """The judge, the labels and conditions every model draws for, and a cache of drawn images."""

    def __init__(self, teacher, n: int):
        config = EvaluateConfig(n=n, quiet=True)
        self.judge, self.n, _, floor_set, self.classifier_accuracy = judge_for(
            teacher.meta.data.name, tuple(teacher.meta.data.image_shape), teacher.num_classes, config
        )
        self.floor = self.judge.fd(floor_set)
        self.labels = torch.arange(teacher.num_classes).repeat(self.n // teacher.num_classes + 1)[: self.n]
        self.cond = teacher.conditioning.encode(labels=self.labels)
        self.drawn = {}

    def draw(self, name: str, ckpt, s: float, steps, sampler=None):
        key = (name, s, len(steps) if isinstance(steps, list) else steps, sampler)
        if key not in self.drawn:
            images = generate(ckpt.model, ckpt.process, self.cond, s=s, steps=steps, sampler=sampler, batch_size=500)
            self.drawn[key] = images
        return self.drawn[key]

    def quality(self, images) -> dict:
        return self.judge.quality(images, self.labels)


def gate_rows(bench: Bench, teacher, stage1, students: dict) -> list:
    """Each few-step student, and the stage-1 student at 64 steps for reference, against the teacher at 64 steps."""
    rows = []
    models = [(64, "stage-1 student", stage1, TEACHER_STEPS)]
    for n in sorted(students, reverse=True):
        models.append((n, f"round-{n}", students[n], students[n].grid))
    for steps, name, student, grid in models:
        for s in GATE_S:
            t_images, s_images = bench.draw("teacher", teacher, s, TEACHER_STEPS), bench.draw(name, student, s, grid)
            row = {"model": name, "student_steps": steps, "s": s, "teacher": bench.quality(t_images)}
            row["student"] = bench.quality(s_images)
            hits = [predict(bench.judge.classifier, x) == bench.labels for x in (t_images, s_images)]
            row["accuracy_gap_se"] = paired_gap_se(*hits)
            row["student_matches"] = matches(row, bench.floor, GATE)
            rows.append(row)
    return rows


def samplers(bench: Bench, teacher, students: dict) -> list:
    """The 1-, 2- and 4-step students with the deterministic and the stochastic sampler: FD to real data,
    accuracy, and FD to the 64-step teacher's own samples at that s (how closely each follows the teacher)."""
    rows = []
    for s in GATE_S:
        to_teacher = FrechetDistance(bench.judge.classifier, bench.draw("teacher", teacher, s, TEACHER_STEPS))
        for steps in (n for n in STOCHASTIC_STEPS if n in students):
            student, row = students[steps], {"student_steps": steps, "s": s}
            for sampler in ("deterministic", "stochastic"):
                images = bench.draw(f"round-{steps}", student, s, student.grid, None if sampler[0] == "d" else sampler)
                row[sampler] = bench.quality(images) | {"fd_to_teacher": to_teacher(images)}
            rows.append(row)
    return rows


def speed(teacher, student, cond, repeats: int = 5) -> dict:
    """Samples/s of the 4-step student and the 64-step CFG teacher, interleaved; the median ratio."""
    ratios, rates = [], {"teacher": [], "student": []}
    for _ in range(repeats):
        for name, ckpt, steps in (("teacher", teacher, TEACHER_STEPS), ("student", student, None)):
            steps = steps or student.grid
            start = time.perf_counter()
            generate(ckpt.model, ckpt.process, cond, s=NFE_S, steps=steps, batch_size=len(cond))
            rates[name].append(len(cond) / (time.perf_counter() - start))
        ratios.append(rates["student"][-1] / rates["teacher"][-1])
    return {"ratio_median": statistics.median(ratios), "ratios": ratios, "samples_per_s": rates}


def grids(bench: Bench, teacher, students: dict, path: Path):
    """Teacher at 64 steps beside students at 8, 4, 2, 1 steps, the first image of each class, from one noise."""
    k = teacher.num_classes
    panels = {f"teacher, {TEACHER_STEPS} steps": [bench.draw("teacher", teacher, s, TEACHER_STEPS)[:k] for s in GRID_S]}
    for steps in (n for n in GRID_STEPS if n in students):
        student = students[steps]
        drawn = [bench.draw(f"round-{steps}", student, s, student.grid)[:k] for s in GRID_S]
        panels[f"{steps} step{'s' * (steps > 1)}"] = drawn
    rows = [f"s={s:g}" for s in GRID_S]
    panels = {title: torch.stack(x) for title, x in panels.items()}
    save_image(labelled_panels(panels, rows, teacher.class_names), path)


def markdown(report: dict) -> str:
    lines = ["| student | steps | s | FD teacher@64 / student | accuracy teacher / student | gap ± 2 SE | gates |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for r in report["gates"]:
        t, st, ok = r["teacher"], r["student"], r["student_matches"]
        lines.append(
            f"| {r['model']} | {r['student_steps']} | {r['s']:g} | {t['fd']:.2f} / {st['fd']:.2f} | "
            f"{100 * t['accuracy']:.1f}% / "
            f"{100 * st['accuracy']:.1f}% | {100 * (t['accuracy'] - st['accuracy']):+.1f} ± "
            f"{200 * r['accuracy_gap_se']:.1f} | {'yes' if ok['fd'] else 'no'}, {'yes' if ok['accuracy'] else 'no'} |"
        )
    tail = f"\n\nGates: FD <= {FD_RATIO}x the teacher's or within the noise floor ({report['fd_noise_floor']:.2f}), "
    tail += f"accuracy within {100 * ACCURACY_GAP:g} points; {report['n']} samples per s."
    if report["speed"]:
        sp = report["speed"]
        tail += f" The 4-step student draws {sp['ratio_median']:.1f}x the samples/s of the 64-step CFG teacher"
        tail += f" (median of {len(sp['ratios'])}, interleaved)."
    return "\n".join(lines) + tail + "\n\n" + "\n".join(sampler_lines(report["samplers"])) + "\n"


def sampler_lines(rows: list) -> list:
    lines = ["| steps | s | FD to the teacher's samples, deterministic / stochastic | FD to real data | accuracy |"]
    lines.append("| --- " * 5 + "|")
    for r in sorted(rows, key=lambda r: (r["student_steps"], r["s"])):
        d, st = r["deterministic"], r["stochastic"]
        lines.append(
            f"| {r['student_steps']} | {r['s']:g} | {d['fd_to_teacher']:.2f} / {st['fd_to_teacher']:.2f} | "
            f"{d['fd']:.2f} / {st['fd']:.2f} | {100 * d['accuracy']:.1f}% / {100 * st['accuracy']:.1f}% |"
        )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--fewstep", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    teacher, stage1 = load(Path(args.models) / "teacher"), load(Path(args.models) / "student")
    students = {len(c.grid): c for c in map(load, Path(args.fewstep).glob("rounds/steps-*"))}
    bench, out = Bench(teacher, args.n), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"n": bench.n, "teacher_steps": TEACHER_STEPS, "fd_noise_floor": bench.floor}
    report["speed"] = speed(teacher, students[4], bench.cond) if 4 in students else None
    report["gates"] = gate_rows(bench, teacher, stage1, students)
    report["fd_vs_nfe"] = nfe_curves(bench.quality, bench.draw, teacher, stage1, students)
    report["samplers"] = samplers(bench, teacher, students)
    report["classifier_held_out_accuracy"] = bench.classifier_accuracy
    report["progressive"] = students[min(students)].meta.training["progressive"]
    report["machine"] = machine_record()
    plot_nfe(report["fd_vs_nfe"], bench.floor, out / "fd_vs_nfe.png")
    grids(bench, teacher, students, out / "samples.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
