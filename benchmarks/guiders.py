"""The teacher under every guider: FD against accuracy along s (a Pareto plot), and saturation.

    python benchmarks/guiders.py --teacher runs/fashion-flow/teacher --out docs/results/guiders-fashion-flow
        [--guide-model PATH] [--n 300] [--steps 20] [--guidance 1,2,3,5]

Every guider draws from the same seeds and labels (text models: each class's first prompt). Each point also
has `evaluate`'s saturation: the share of pixels within 2% of the range's ends. Autoguidance (alone, and with
half its weight on CFG's direction) runs when `--guide-model` names a weaker teacher. Curves already in OUT's
report.json for the same teacher, guide, n, steps and s are kept rather than drawn again.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cfgdistill import EvaluateConfig, load  # noqa: E402
from cfgdistill.evaluation.report import judge_for  # noqa: E402
from cfgdistill.guidance import RULES, rule_options  # noqa: E402
from cfgdistill.guidance.sampling import generate  # noqa: E402
from cfgdistill.training.machine import machine_record  # noqa: E402

GUIDERS = {  # label -> (rule, options): the papers' suggestions where they carry over, else diffusers' defaults
    "cfg": ("cfg", {}),
    "rescale": ("rescale", {"phi": 0.7}),
    "interval": ("interval", {"start": 0.15, "stop": 0.8}),
    "cfg-zero-star": ("cfg-zero-star", {"zero_init_steps": 1}),
    "apg": ("apg", {"eta": 0.0}),
    "apg, momentum -0.5": ("apg", {"eta": 0.0, "momentum": -0.5}),
}


AUTOGUIDERS = {
    "autoguidance": ("autoguidance", {}),
    "autoguidance, cfg_share 0.5": ("autoguidance", {"cfg_share": 0.5}),
}


def kept(path: Path, args) -> dict:
    """The curves of an earlier report.json at `path` drawn under the same settings."""
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    same = [old.get(k) for k in ("teacher", "guide_model", "n", "steps")] == [
        args.teacher,
        args.guide_model,
        args.n,
        args.steps,
    ]
    return {k: v for k, v in old["guiders"].items() if same and [r["s"] for r in v] == args.guidance}


def curves(teacher, guide, judge, labels, args, done: dict) -> dict:
    cond = teacher.conditioning.encode(labels=labels)
    guiders = GUIDERS | (AUTOGUIDERS if guide else {})
    out, conditional = {}, None  # every rule but cfg-zero-star is the conditional model at s = 1: drawn once
    for label, (name, options) in guiders.items():
        if label in done:
            out[label] = done[label]
            continue
        options = rule_options(name, options) | ({"guide": guide.model} if name == "autoguidance" else {})
        out[label] = []
        for s in args.guidance:
            exact = s == 1 and getattr(RULES[name], "exact_at", {}).get(1.0) == "cond"
            if exact and conditional is not None:
                out[label].append(conditional)
                continue
            images = generate(teacher.model, teacher.process, cond, s=s, rule=name, options=options, steps=args.steps)
            row = {"s": s, **judge.quality(images, labels)}
            conditional = row if exact else conditional
            out[label].append(row)
            print(f"{label} s={s:g}: FD {row['fd']:.2f}, accuracy {100 * row['accuracy']:.1f}%", flush=True)
    return out


def plot(results: dict, floor: float, path: Path):
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, rows in results.items():
        ax.plot([100 * r["accuracy"] for r in rows], [r["fd"] for r in rows], "o-", label=name)
        for r in rows:
            ax.annotate(f"{r['s']:g}", (100 * r["accuracy"], r["fd"]), fontsize=7, alpha=0.7)
    ax.axhline(floor, color="grey", ls=":", label="FD noise floor")
    ax.set(xlabel="accuracy (%), labels at each point: s", ylabel="FD to real data (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--guide-model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=lambda t: [float(x) for x in t.split(",")], default=[1, 2, 3, 5])
    args = parser.parse_args()
    teacher = load(args.teacher)
    guide = load(args.guide_model) if args.guide_model else None
    data = teacher.meta.data
    judge, n, _, floor_set, _ = judge_for(
        data.name, tuple(data.image_shape), teacher.num_classes, EvaluateConfig(n=args.n, quiet=True)
    )
    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes + 1)[:n]
    out = Path(args.out)
    done = kept(out / "report.json", args)
    results = curves(teacher, guide, judge, labels, args, done)
    floor = judge.fd(floor_set)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, floor, out / "fd_vs_accuracy_by_guider.png")
    report = {"teacher": args.teacher, "guide_model": args.guide_model, "n": n, "steps": args.steps}
    report |= {"options": GUIDERS | (AUTOGUIDERS if guide else {}), "fd_noise_floor": floor}
    report |= {"guiders": results, "machine": machine_record(), "kept_from_the_earlier_report": list(done)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
