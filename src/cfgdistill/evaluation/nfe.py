"""FD against network evaluations per image at one s: the CFG teacher and the stage-1 student at 8 to 64
steps, and every round of a few-step student (`evaluate` on a stage-2 student, benchmarks/fewstep.py)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..checkpoint import META_FILE, load  # noqa: E402
from ..io import atomic  # noqa: E402

NFE_S = 3.0
BASELINE_STEPS = (8, 16, 32, 64)
CURVES = ("CFG teacher", "stage-1 student", "few-step students")


def fewstep_family(student) -> tuple:
    """(the stage-1 student its rounds started from or None, {steps: every round's student}) of a few-step
    student: the rounds are the `rounds/steps-N` folders of its progressive run, the student itself included."""
    rounds = {len(student.grid): student}
    path = Path(student.path) if student.path else None
    folder = path and (path / "rounds" if (path / "rounds").is_dir() else path.parent)
    if folder and folder.name == "rounds":
        for round_dir in folder.glob("steps-*"):
            if (round_dir / META_FILE).is_file():
                done = load(round_dir)
                rounds.setdefault(len(done.grid), done)
    stage1 = student.meta.training.get("stage1")
    return (load(stage1) if stage1 and (Path(stage1) / META_FILE).is_file() else None), rounds


def nfe_curves(quality, draw, teacher, stage1, rounds: dict, s: float = NFE_S) -> dict:
    """{curve: [{steps, nfe, fd, accuracy, ...}]}; `draw(name, checkpoint, s, steps or grid)` gives images and
    `quality(images)` their figures. A missing stage-1 student leaves its curve empty."""
    curves = {name: [] for name in CURVES}
    for steps in BASELINE_STEPS:
        for name, ckpt, passes in ((CURVES[0], teacher, 2), (CURVES[1], stage1, 1)):
            if ckpt is not None:
                curves[name].append({"steps": steps, "nfe": passes * steps, **quality(draw(name, ckpt, s, steps))})
    for steps, student in sorted(rounds.items()):
        figures = quality(draw(f"round-{steps}", student, s, student.grid))
        curves[CURVES[2]].append({"steps": steps, "nfe": steps, **figures})
    return curves


def plot_nfe(curves: dict, floor: float, path: Path, s: float = NFE_S):
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        if points:
            ax.plot([p["nfe"] for p in points], [p["fd"] for p in points], "o-", label=name)
    ax.axhline(floor, color="grey", ls=":", label="FD noise floor")
    ax.set(xscale="log", xlabel="network evaluations per image", ylabel=f"FD at s = {s:g}")
    ax.legend()
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
