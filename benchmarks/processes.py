"""Forward processes and networks compared on one dataset: each pair's figures from its `evaluate` report, and
each teacher's FD against its number of sampling steps at s = 3, measured here with the same judge.

    python benchmarks/processes.py --pair vp+unet runs/fashion docs/results/fashion \\
        --pair flow+unet runs/fashion-flow docs/results/fashion-flow \\
        --pair flow+flux runs/fashion-flux docs/results/fashion-flux --out docs/results/flow

Writes OUT/comparison.json and OUT/fd_vs_steps.png.
"""

import argparse
import json
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cfgdistill import EvaluateConfig, load  # noqa: E402
from cfgdistill.conditioning import TextConditioning  # noqa: E402
from cfgdistill.evaluation.report import make_judge  # noqa: E402
from cfgdistill.guidance.sampling import generate  # noqa: E402
from cfgdistill.training.machine import machine_record  # noqa: E402

SCALES = (1.0, 2.0, 3.0, 5.0)
STEPS = (8, 16, 32)
S = 3.0


def from_report(report: dict) -> dict:
    """The comparison's figures from one `evaluate` report."""
    rows = {row["s"]: row for row in report["rows"]}
    paraphrases = report.get("held_out_paraphrases") or {}
    return {
        "sampler": report["sampler"],
        "sampling_steps": report["steps"],
        "teacher": {f"{s:g}": {k: rows[s]["teacher"][k] for k in ("fd", "accuracy")} for s in SCALES},
        "student": {f"{s:g}": {k: rows[s]["student"][k] for k in ("fd", "accuracy")} for s in SCALES},
        "student_matches": {f"{s:g}": rows[s]["student_matches"] for s in SCALES},
        "student_over_teacher_samples_per_s": {f"{s:g}": rows[s]["throughput_ratio"] for s in SCALES},
        "nfe_per_image": {f"{s:g}": [rows[s][m]["nfe_per_image"] for m in ("teacher", "student")] for s in SCALES},
        "fd_noise_floor": report["fd_noise_floor"],
        "held_out_paraphrase_accuracy_s3": {m: paraphrases.get(f"{m}_accuracy") for m in ("teacher", "student")},
        "held_out_new_word_accuracy_s3": new_word_accuracy(report),
    }


def new_word_accuracy(report: dict) -> dict:
    """Held-out accuracy at s = 3 per word only the held-out prompts use: which words each text pathway draws."""
    per_prompt = (report.get("held_out_paraphrases") or {}).get("per_prompt", {})
    words = TextConditioning.for_dataset(report["dataset"], report["class_names"]).new_words
    result = {}
    for name, new in words.items():
        for word in new:
            rows = [row for prompt, row in per_prompt.items() if word in prompt and row["class"] == name]
            if rows:
                result[word] = {m: sum(r[m] for r in rows) / len(rows) for m in ("teacher", "student")}
                result[word]["encoder_places"] = sum(r["encoder_places"] for r in rows) / len(rows)
    return result


def fd_against_steps(runs: Path, n: int, steps: tuple) -> dict:
    """The teacher's FD at s = 3 for each step count, from the same noise, labels and judge as `evaluate`."""
    teacher = load(runs / "teacher")
    judge, n, *_ = make_judge(teacher, EvaluateConfig(n=n, quiet=True))
    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes + 1)[:n]
    cond = teacher.conditioning.encode(labels=labels)
    return {k: judge.fd(generate(teacher.model, teacher.process, cond, s=S, steps=k)) for k in steps}


def plot(result: dict, out: Path):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, pair in result["pairs"].items():
        steps = [int(k) for k in pair["teacher_fd_vs_steps_s3"]]
        ax.plot(steps, list(pair["teacher_fd_vs_steps_s3"].values()), marker="o", label=f"{name} ({pair['sampler']})")
    ax.set(xscale="log", xlabel="sampling steps (teacher: 2 passes each)", ylabel="FD at s = 3")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(STEPS))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "RUNS", "REPORT"), required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("docs/results/flow"))
    args = parser.parse_args()
    pairs = {}
    for name, runs, report in args.pair:
        pairs[name] = from_report(json.loads((Path(report) / "report.json").read_text()))
        pair = pairs[name]
        fd = fd_against_steps(Path(runs), args.n, (*STEPS, pair["sampling_steps"]))
        pair["teacher_fd_vs_steps_s3"] = {k: fd[k] for k in STEPS}
        # the report's own step count again: equal FD means the models here are the ones the report measured
        pair["report_teacher_fd_s3_remeasured"] = fd[pair["sampling_steps"]]
    result = {"machine": machine_record(), "samples": args.n, "s": S, "pairs": pairs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "fd_vs_steps.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
