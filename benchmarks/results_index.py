"""docs/results/INDEX.md: every results folder and file, with the command and recipe that made it and the
machine and date its own records name.

    python benchmarks/results_index.py          # writes docs/results/INDEX.md
    python benchmarks/results_index.py --check  # exits 1 if INDEX.md is stale or a folder or file is unlisted

A folder's machine and date come from the `machine` record of its JSON files; a folder written before those
records existed carries the date it was added to the repository, and says so.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "docs" / "results"
INDEX = ROOT / "INDEX.md"
E = "`cfgdistill evaluate`"
F = "`make fashion-flux-pipeline`"
FLUX_0_8 = "`distill --recipe fashion-flux --set guidance_max=8"
# folder (or top-level file) -> (command, recipe, what it shows, date added where no record names one)
SOURCES = {
    ".": ("`make bench`", "digits", "the README's digits table and plots (report.md, *.png)", None),
    "demo_summary.json": ("`make demo`", "demo", "the demo's paired errors and timings", None),
    "demo_student_s4.png": ("`make demo`", "demo", "the demo student's samples at s = 4", "2026-11-25"),
    "demo_teacher_vs_student.png": ("`make demo`", "demo", "the README's picture", "2026-11-25"),
    "restructure_check_cpu.json": ("`make demo` before and after a restructuring", "demo", "paired errors", None),
    "startup_cpu.json": ("`cfgdistill sample --n 1`, 5 runs before and after", "demo", "start-up time", None),
    "training.json": ("`benchmarks/training.py`", "digits", "our loop against a plain diffusers one", "2026-12-02"),
    "training_cpu_epyc_bf16.json": ("`benchmarks/training.py`", "digits", "bf16 on an AVX-512 BF16 EPYC", None),
    "training_gpu_h200.json": ("`benchmarks/training.py`", "digits", "the loop on an H200", "2026-11-25"),
    "training_fashion_cpu.json": ("`benchmarks/training.py`", "fashion", "the Fashion loop", "2026-11-26"),
    "training_cost_digits.json": ("`benchmarks/training_cost.py`", "digits", "fp32 against bf16 steps/s", None),
    "training_cost_fashion-cpu.json": ("`benchmarks/training_cost.py`", "fashion", "fp32 against bf16", None),
    "distill_cost": (
        "`make distill-cost`, `make distill-cost-fashion`",
        "digits, fashion-flow",
        "gates against distillation steps per recipe (docs/distillation.md); the retired options' files are findings",
        None,
    ),
    "fashion": ("`make fashion`", "fashion", "the README's Fashion-MNIST table", "2026-11-26"),
    "fashion/by_s": (E, "fashion", "a student weighted by s (docs/lab/fashion-experiments.md)", "2026-11-26"),
    "fashion/check_2000": (E + " --n 2000", "fashion", "the preset's pair at 2000 samples", "2026-11-27"),
    "fashion/student_seed1": (E, "fashion --seed 1", "a second student of the same teacher", "2026-11-26"),
    "fashion/student_seed2": (E, "fashion --seed 2", "a third student of the same teacher", "2026-11-27"),
    "fashion-flow": (
        "`make fashion OBJECTIVE=flow`",
        "fashion --objective flow, s in [0, 6]",
        "the flow UNet",
        "2026-12-02",
    ),
    "fashion-flow-s-one": ("`make fashion OBJECTIVE=flow`", "fashion-flow", "the recipe's measured pair", None),
    "fashion-flow-s-one/range-1-6": (E, "fashion-flow --set s_one_share=0", "[1, 6] without anchors", None),
    "fashion-flow-s-one/range-1-6-s-one": (E, "fashion-flow", "the recipe at 800 steps", None),
    "fashion-flow-s-one/without": (E, "fashion --objective flow", "the [0, 6] recipe it replaced", None),
    "fashion-flux": (
        "`make fashion ARCH=flux`",
        "fashion-flux (retired)",
        "the pixel-space Flux pair (docs/flow.md)",
        None,
    ),
    "fashion-flux/distill-1200": (E, "fashion-flux --steps 1200", "a longer distillation", "2026-12-02"),
    "fashion-flux/range-0-8": (E, FLUX_0_8 + "`", "s in [0, 8]", None),
    "fashion-flux/range-0-8-s-one": (E, FLUX_0_8 + " --set s_one_share=0.25`", "with anchors", None),
    "fashion-flux/range-0-8-s-one-1600-n1000": (E + " --n 1000", "the same, 1600 steps", "more steps", None),
    "fashion-flux/range-0-8-s-one-half-1600-n1000": (E + " --n 1000", "the same, s_one_share 0.5", "", None),
    "fashion-flux/range-0-8-s-one-n2000": (E + " --n 2000", "the anchored [0, 8] student", "the final table", None),
    "fashion-flux/range-0-8-s-one-new-lr-5-n1000": (E + " --n 1000", "retired new_lr_scale 5", "a finding", None),
    "fashion-flux/range-0-8-s-one-prediction-n1000": (E + " --n 1000", "loss_space prediction", "", None),
    "fashion-flux/range-1-6-s-one": (E, "fashion-flux --set guidance_min=1 --set s_one_share=0.25", "", None),
    "fashion-guiders": ("`make guiders-fashion`", "fashion-flow-*", "the guider students", "2026-12-02"),
    "fashion-guiders/apg": (E, "fashion-flow-apg", "the README's APG row", None),
    "fashion-guiders/autoguidance": (E, "fashion-flow-autoguidance", "the README's autoguidance row", None),
    "fashion-guiders/autoguidance-800": (E, "fashion-flow-autoguidance --steps 800", "", None),
    "fashion-guiders/interval": (E, "fashion-flow-interval", "the README's interval row", None),
    "fashion-guiders/interval-800": (E, "fashion-flow-interval --steps 800", "", None),
    "fashion-guiders/range-0-6": (E, "guider students on s in [0, 6]", "before the anchored range", "2026-12-03"),
    "fashion-guiders/range-0-6/apg": (E, "APG on [0, 6]", "", "2026-12-03"),
    "fashion-guiders/range-0-6/autoguidance": (E, "autoguidance on [0, 6]", "", "2026-12-03"),
    "fashion-guiders/range-0-6/interval": (E, "interval on [0, 6]", "", "2026-12-03"),
    "fashion-negatives-composed": (E, "retired composed_negatives", "a finding (17.1% avoidance)", None),
    "fashion-negatives-joint": (E, "retired negative_input joint", "a finding (18.1% avoidance)", None),
    "fashion-negatives-q": (E, "fashion-flow-negatives", "the one-pass negative (10.6% avoidance)", None),
    "fashion-negatives-q-additive": (E, "negatives without the s - 1 factor", "9.6% avoidance", None),
    "fashion-negatives-q-range-0-6": (E, "negatives on [0, 6]", "", "2026-12-03"),
    "fashion-flux-pipeline": (F, "pipeline-flux", "the full student in the stock FluxPipeline", None),
    "fashion-flux-pipeline/lora": (F, "pipeline-flux --lora-rank 8 --lr 2e-3", "the LoRA student", None),
    "fashion-flux-pipeline/held-out": (F, "pipeline-flux", "the 70 held-out paraphrases at s = 3", None),
    "fashion-flux-pipeline/variants": (F + " variants", "pipeline-flux", "full students of other settings", None),
    "fashion-flux-pipeline/variants/guidance-loss-n1000": (E, "--loss-space guidance", "a preview, 28 steps", None),
    "fashion-flux-pipeline/variants/anchors-0.5-n1000": (E, "--set s_one_share=0.5", "a preview, 28 steps", None),
    "fashion-flux-pipeline/variants/guidance-loss-anchors-0.5": (E, "both", "2000 samples", None),
    "fashion-flux-pipeline/variants/prediction-loss-n1000": (E, "--loss-space prediction", "a preview", None),
    "fashion-flux-pipeline/variants/lr-2e-4-anchors-0.5": (E, "--lr 2e-4 --set s_one_share=0.5", "s = 1 only", None),
    "fashion-pipeline": ("`make fashion-pipeline`", "pipeline", "the stock-pipeline pair", None),
    "fashion-pipeline/lora": ("`make fashion-pipeline` with --set lora_rank=16", "pipeline", "LoRA", None),
    "fashion-pipeline/paths-only": ("the same", "pipeline --set trajectory_fraction=1", "paths alone", None),
    "fewstep": ("`make fewstep`", "digits", "the README's few-step table", None),
    "fewstep-fashion-flow": ("`make fewstep-fashion`", "fashion-flow", "few-step on Fashion flow", None),
    "fewstep-flow": ("`make fewstep OBJECTIVE=flow`", "digits", "few-step from flow digits", None),
    "flow": ("`benchmarks/architectures.py`, `benchmarks/processes.py`", "fashion-flux (retired)", "Flux sizes", None),
    "guiders-fashion-flow": ("`benchmarks/guiders.py`", "fashion-flow", "the teacher under every guider", None),
    "pipelines": ("`benchmarks/pipeline_cost.py`", "pipeline", "SD 1.5-sized cost on the CPU", None),
}


def machine_and_date(folder: Path, added: str | None) -> tuple:
    """(machine, date) from the newest `machine` record of the folder's own JSON files (not its sub-folders)."""
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else [folder]:
        try:
            record = json.loads(path.read_text()).get("machine")
        except (ValueError, AttributeError):
            continue
        if isinstance(record, dict) and record.get("date"):
            records.append(record)
    if not records:
        return "not recorded", f"{added} (added)" if added else "not recorded"
    last = max(records, key=lambda r: r["date"])
    cpu = " ".join(filter(None, (last.get("cpu_model"), last.get("cpu_capability")))) or last.get("processor") or "?"
    gpu = last.get("gpu") or last.get("device")
    return f"{cpu}, {last.get('cpu_count', '?')} cores" + (f", {gpu}" if gpu not in (None, "cpu") else ""), last[
        "date"
    ][:10]


def listed() -> tuple:
    """(unlisted folders and files, listed ones that do not exist)."""
    folders = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_dir()} | {"."}
    top = {p.name for p in ROOT.iterdir() if p.is_file()} - {INDEX.name}
    top = {name for name in top if not name.endswith((".png", ".md")) or name.startswith("demo_")}
    missing = sorted((folders | top) - set(SOURCES) - {"report.json"})
    gone = sorted(name for name in SOURCES if not (ROOT / name).exists())
    return missing, gone


def render() -> str:
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/results_index.py`; a test fails on a folder or file listed nowhere.",
        "Recipes are those of [docs/recipes.md](../recipes.md); `.` holds the digits report and its plots.",
        "",
        "| path | command | recipe | what it shows | machine | date |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, (command, recipe, what, added) in SOURCES.items():
        machine, date = machine_and_date(ROOT / name, added)
        lines.append(f"| [{name}]({name}) | {command} | {recipe} | {what} | {machine} | {date} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    missing, gone = listed()
    if missing or gone:
        sys.exit(f"unlisted: {', '.join(missing) or 'none'}; listed but absent: {', '.join(gone) or 'none'}")
    if args.check:
        sys.exit(0 if INDEX.is_file() and INDEX.read_text() == render() else "docs/results/INDEX.md is stale")
    INDEX.write_text(render())


if __name__ == "__main__":
    main()
