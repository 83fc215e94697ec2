"""Plots of a report: FD and accuracy against s, the FD–accuracy trade-off, and speed."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic  # noqa: E402

STYLE = {
    "teacher": dict(marker="o", label="teacher (CFG, 2 passes)"),
    "student": dict(marker="s", linestyle="--", label="student (1 pass)"),
}


def shade_extrapolated(ax, report):
    low, high = report["student_trained_range"]
    ax.axvspan(low, high, color="0.92", zorder=0, label="student's trained range")


def plot_report(report: dict, out: Path) -> None:
    """fd_vs_s.png, accuracy_vs_s.png, diversity_vs_s.png, fd_vs_accuracy.png and speed.png in `out`."""
    for plot in (fd_vs_s, accuracy_vs_s, diversity, trade_off, speed):
        fig = plot(report)
        fig.tight_layout()
        with atomic(out / fig.get_label()) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)


def curves(ax, report, metric):
    shade_extrapolated(ax, report)
    s = [r["s"] for r in report["rows"]]
    for model, style in STYLE.items():
        ax.plot(s, [r[model][metric] for r in report["rows"]], **style)
    ax.set_xlabel("guidance scale s")


def fd_vs_s(report):
    return metric_vs_s(report, "fd", "Fréchet distance (classifier features)")


def accuracy_vs_s(report):
    return metric_vs_s(report, "accuracy", "conditional accuracy")


def metric_vs_s(report, metric: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(5.5, 3.8), label=f"{metric}_vs_s.png")
    curves(ax, report, metric)
    if metric == "fd":
        ax.axhline(
            report["fd_noise_floor"], color="0.5", linewidth=1, linestyle=":", label="FD noise floor (real vs real)"
        )
    ax.set_ylabel(ylabel)
    ax.set_title(f"{report['dataset']}, {report['samples_per_scale']} samples per point")
    ax.legend(fontsize=8)
    return fig


def diversity(report):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), label="diversity_vs_s.png")
    for ax, metric, ylabel in zip(
        axes,
        ("within_class_distance", "recall"),
        ("within-class feature distance", "recall (k-NN, coverage of real data)"),
    ):
        curves(ax, report, metric)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(f"diversity falls as s rises ({report['samples_per_scale']} samples per point)")
    return fig


def trade_off(report):
    fig, ax = plt.subplots(figsize=(5.5, 3.8), label="fd_vs_accuracy.png")
    for model, style in STYLE.items():
        ax.plot([r[model]["accuracy"] for r in report["rows"]], [r[model]["fd"] for r in report["rows"]], **style)
        for r in report["rows"]:
            ax.annotate(
                f"{r['s']:g}",
                (r[model]["accuracy"], r[model]["fd"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("conditional accuracy (higher: follows the class)")
    ax.set_ylabel("FD (lower: closer to real data)")
    ax.set_title("trade-off along s (labels: s)")
    ax.legend(fontsize=8)
    return fig


def speed(report):
    rows, width = report["rows"], 0.38
    fig, ax = plt.subplots(figsize=(5.5, 3.8), label="speed.png")
    for offset, model in ((-width / 2, "teacher"), (width / 2, "student")):
        ax.bar(
            [i + offset for i in range(len(rows))],
            [r[model]["samples_per_s"] for r in rows],
            width,
            label=STYLE[model]["label"],
        )
    ax.set_xticks(list(range(len(rows))), [f"{r['s']:g}" for r in rows])
    ax.set_xlabel("guidance scale s")
    ax.set_ylabel(f"samples/s at {report['steps']} steps")
    ax.legend(fontsize=8)
    return fig
