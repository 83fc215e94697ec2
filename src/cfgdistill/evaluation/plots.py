"""Plots of a report: FD and accuracy against s, the FD–accuracy trade-off, and speed."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"teacher": dict(marker="o", label="teacher (CFG, 2 passes)"), "student": dict(marker="s", linestyle="--", label="student (1 pass)")}


def shade_extrapolated(ax, report):
    low, high = report["student_trained_range"]
    ax.axvspan(low, high, color="0.92", zorder=0, label="student's trained range")


def plot_report(report: dict, out: Path) -> None:
    rows = report["rows"]
    s = [r["s"] for r in rows]
    n = report["samples_per_scale"]
    for metric, ylabel, name in (("fd", "Fréchet distance (classifier features)", "fd_vs_s.png"), ("accuracy", "conditional accuracy", "accuracy_vs_s.png")):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        shade_extrapolated(ax, report)
        for model, style in STYLE.items():
            ax.plot(s, [r[model][metric] for r in rows], **style)
        if metric == "fd":
            ax.axhline(report["fd_noise_floor"], color="0.5", linewidth=1, linestyle=":", label="FD noise floor (real vs real)")
        ax.set_xlabel("guidance scale s")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{report['dataset']}, {n} samples per point")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, ylabel in zip(axes, ("within_class_distance", "recall"), ("within-class feature distance", "recall (k-NN, coverage of real data)")):
        shade_extrapolated(ax, report)
        for model, style in STYLE.items():
            ax.plot(s, [r[model][metric] for r in rows], **style)
        ax.set_xlabel("guidance scale s")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(f"diversity falls as s rises ({n} samples per point)")
    fig.tight_layout()
    fig.savefig(out / "diversity_vs_s.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for model, style in STYLE.items():
        ax.plot([r[model]["accuracy"] for r in rows], [r[model]["fd"] for r in rows], **style)
        for r in rows:
            ax.annotate(f"{r['s']:g}", (r[model]["accuracy"], r[model]["fd"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("conditional accuracy (higher: follows the class)")
    ax.set_ylabel("FD (lower: closer to real data)")
    ax.set_title("trade-off along s (labels: s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fd_vs_accuracy.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    width = 0.38
    x = range(len(rows))
    for offset, model in ((-width / 2, "teacher"), (width / 2, "student")):
        ax.bar([i + offset for i in x], [r[model]["samples_per_s"] for r in rows], width, label=STYLE[model]["label"])
    ax.set_xticks(list(x), [f"{v:g}" for v in s])
    ax.set_xlabel("guidance scale s")
    ax.set_ylabel(f"samples/s at {report['steps']} steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "speed.png", dpi=120)
    plt.close(fig)
