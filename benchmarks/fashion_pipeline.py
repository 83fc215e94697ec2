"""A latent Fashion-MNIST pipeline in StableDiffusionPipeline's layout: build it, then judge teacher and student.

    python benchmarks/fashion_pipeline.py build --out runs/fashion-pipeline
    cfgdistill distill --teacher runs/fashion-pipeline/teacher --prompts runs/fashion-pipeline/prompts.txt ...
    python benchmarks/fashion_pipeline.py evaluate --teacher ... --student ... --out docs/results/fashion-pipeline

`evaluate` samples both in the stock `StableDiffusionPipeline` (the teacher by its CFG, the student in one
pass), from the same seeds, each class's first training prompt in turn, interleaving teacher and student
batches for the samples/s ratio, and applies the project's gates with its Fashion-MNIST classifier.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from cfgdistill.cli import quiet_libraries
from cfgdistill.config import EvaluateConfig, RunOptions
from cfgdistill.data import load_dataset
from cfgdistill.data.captions import captions
from cfgdistill.evaluation.classifier import predict
from cfgdistill.evaluation.machine import machine_record
from cfgdistill.evaluation.metrics import paired_gap_se
from cfgdistill.evaluation.report import judge_for, matches
from cfgdistill.images import tile
from cfgdistill.pretrained.build import PAD, LatentRecipe, build


def build_teacher(args):
    data = load_dataset("fashion-mnist", "train")
    prompts = captions("fashion-mnist", data.class_names)[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompts.txt").write_text("\n".join(p for name in data.class_names for p in prompts[name]) + "\n")
    recipe = LatentRecipe(vae_steps=args.vae_steps, unet_steps=args.unet_steps, batch_size=args.batch_size)
    start = time.perf_counter()
    build(data, prompts, out, recipe, RunOptions(out=out, overwrite=True, quiet=args.quiet, validate_every=0))
    record = {"build_seconds": time.perf_counter() - start, "recipe": vars(recipe), "machine": machine_record()}
    (out / "build.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


class Timed:
    """A pipeline, the seconds it has spent sampling, and its samples as 28×28 images in [−1, 1]."""

    def __init__(self, folder):
        self.pipe = StableDiffusionPipeline.from_pretrained(folder)
        self.pipe.set_progress_bar_config(disable=True)
        self.seconds, self.images = 0.0, []

    def __call__(self, prompts, seeds, s, steps):
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        start = time.perf_counter()
        out = self.pipe(prompts, guidance_scale=s, num_inference_steps=steps, generator=generators, output_type="pt")
        self.seconds += time.perf_counter() - start
        self.images.append(out.images[:, :, PAD:-PAD, PAD:-PAD].float() * 2 - 1)


def evaluate(args):
    config = EvaluateConfig(n=args.n, steps=args.steps, out=Path(args.out))
    data = load_dataset("fashion-mnist", "test")
    first = [captions("fashion-mnist", data.class_names)[0][name][0] for name in data.class_names]
    judge, n, _, disjoint, classifier_accuracy = judge_for("fashion-mnist", (1, 28, 28), 10, config)
    labels = torch.arange(n) % 10
    config.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in args.guidance:
        models = {"teacher": Timed(args.teacher), "student": Timed(args.student)}
        for start in range(0, n, args.batch_size):  # interleaved, so both see the same machine state
            index = range(start, min(start + args.batch_size, n))
            for model in models.values():
                model([first[labels[i]] for i in index], [config.seed + i for i in index], s, args.steps)
        row, hits = {"s": s}, []
        for name, model in models.items():
            images = torch.cat(model.images)
            row[name] = judge.quality(images, labels) | {"samples_per_s": n / model.seconds}
            hits.append(predict(judge.classifier, images) == labels)
            tile(images[:30], ncol=10).save(config.out / f"{name}_s{s:g}.png")  # three per class
        row["throughput_ratio"] = row["student"]["samples_per_s"] / row["teacher"]["samples_per_s"]
        row["accuracy_gap_se"] = paired_gap_se(*hits)  # the gap's spread from sampling alone
        rows.append(row)
    floor = judge.fd(disjoint)
    for row in rows:
        row["student_matches"] = matches(row, floor)
    report = {"rows": rows, "fd_noise_floor": floor, "classifier_accuracy": classifier_accuracy}
    report |= {"n": n, "steps": args.steps, "machine": machine_record(), "teacher": args.teacher}
    (config.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [
        "| s | FD teacher / student | accuracy teacher / student | gap ± 2 SE | samples/s ratio | gates (FD, acc) |"
    ]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for row in report["rows"]:
        t, s, ok = row["teacher"], row["student"], row["student_matches"]
        gap = 100 * (t["accuracy"] - s["accuracy"])
        lines.append(
            f"| {row['s']:g} | {t['fd']:.1f} / {s['fd']:.1f} | {100 * t['accuracy']:.1f}% / {100 * s['accuracy']:.1f}% "
            f"| {gap:+.1f} ± {200 * row['accuracy_gap_se']:.1f} | {row['throughput_ratio']:.2f} "
            f"| {'yes' if ok['fd'] else 'no'}, {'yes' if ok['accuracy'] else 'no'} |"
        )
    return "\n".join(lines) + f"\n\nFD noise floor {report['fd_noise_floor']:.2f}; {report['n']} samples per s."


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build")
    b.add_argument("--out", required=True)
    b.add_argument("--vae-steps", type=int, default=LatentRecipe.vae_steps)
    b.add_argument("--unet-steps", type=int, default=LatentRecipe.unet_steps)
    b.add_argument("--batch-size", type=int, default=LatentRecipe.batch_size)
    b.add_argument("--quiet", action="store_true")
    e = commands.add_parser("evaluate")
    e.add_argument("--teacher", required=True)
    e.add_argument("--student", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--guidance", type=lambda t: [float(v) for v in t.split(",")], default=[2.0, 3.0, 5.0])
    e.add_argument("--n", type=int, default=500)
    e.add_argument("--steps", type=int, default=20)
    e.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    quiet_libraries()
    build_teacher(args) if args.command == "build" else evaluate(args)


if __name__ == "__main__":
    main()
