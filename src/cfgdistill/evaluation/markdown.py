"""The evaluation report as markdown, and the files an evaluation writes."""

import json
from pathlib import Path

from ..images import labelled_panels, save_image
from ..io import staged, write_text
from .negatives import negative_lines
from .nfe import plot_nfe
from .paraphrases import MODELS, PARAPHRASE_S
from .plots import plot_report


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def largest_class_gap(row: dict, class_names: list) -> str:
    """The class whose teacher − student accuracy gap is largest in size, e.g. "Shirt +14"."""
    pairs = zip(row["teacher"]["per_class_accuracy"], row["student"]["per_class_accuracy"])
    gaps = {c: t - s for c, (t, s) in enumerate(pairs) if t is not None}
    c = max(gaps, key=lambda i: abs(gaps[i]), default=None)
    return f"{class_names[c]} {100 * gaps[c]:+.0f}" if c is not None and gaps[c] else "none"


def markdown(report: dict) -> str:
    lines = header_lines(report)
    lines += [row_line(r, report["class_names"]) for r in report["rows"]]
    if report.get("held_out_paraphrases"):
        lines += paraphrase_lines(report["held_out_paraphrases"])
    if report.get("negatives"):
        lines += negative_lines(report["negatives"])
    if "speed" in report:
        lines += ["", *speed_lines(report["speed"])]
    if report.get("fd_vs_nfe"):
        lines += ["", *nfe_lines(report["fd_vs_nfe"])]
    return "\n".join(lines) + "\n"


def rule_text(rule: dict | None) -> str:
    """ "cfg", or "rescale (phi 0.7)"."""
    if not rule:
        return "cfg"
    options = [f"{key} {value:g}" for key, value in (rule.get("options") or {}).items()]
    options += [f"guide {rule['guide_model']}"] if rule.get("guide_model") else []
    return rule["rule"] + (f" ({', '.join(options)})" if options else "")


def header_lines(report: dict) -> list:
    gate = report.get("gate", {"fd_ratio": 1.10, "accuracy_gap": 0.01})
    return [
        f"# Teacher (CFG) vs student on {report['dataset']}",
        "",
        f"{report['samples_per_scale']} samples per guidance scale and model, {report['steps']} "
        f"{report['sampler']} steps, the teacher guided by {rule_text(report.get('guidance_rule'))}, "
        f"seed {report['seed']}. FD is measured in the feature space of a classifier with held-out accuracy "
        f"{100 * report['classifier_held_out_accuracy']:.1f}%, against {report['samples_per_scale']} held-out "
        "real images; "
        f"its noise floor (FD between two disjoint real sets of that size) is {report['fd_noise_floor']:.2f}. "
        f"The student was distilled on s in {report['student_trained_range']}. It matches the teacher at an s "
        "when its FD is "
        f"at most the teacher's plus the larger of {100 * (gate['fd_ratio'] - 1):.0f}% and the noise floor, and its "
        f"accuracy is within {100 * gate['accuracy_gap']:g} point{'s' * (gate['accuracy_gap'] != 0.01)}. "
        "The accuracy gap's ± is twice the standard error of the paired difference (both models see the same "
        "noise and labels); "
        "the largest class gap is the class whose own accuracy gap, in points, is largest in size; "
        "the nearest teacher s is the evaluated s whose teacher samples, from the same noise, lie nearest the "
        "student's.",
        "",
        "| s | FD teacher | FD student | acc teacher | acc student | acc gap t − s | largest class gap | "
        "diversity teacher | diversity student "
        "| precision t / s | recall t / s | paired error | nearest teacher s | NFE t / s | samples/s t / s | "
        "ratio | student matches (FD, acc) |",
        "|" + " --- |" * 17,
    ]


def row_line(r: dict, class_names: list) -> str:
    t, s = r["teacher"], r["student"]
    mark = " (extrapolated)" if r["extrapolated"] else ""
    return (
        f"| {r['s']:g}{mark} | {t['fd']:.2f} | {s['fd']:.2f} | {100 * t['accuracy']:.1f}% | {100 * s['accuracy']:.1f}% "
        f"| {100 * (t['accuracy'] - s['accuracy']):+.1f} ± {200 * r['accuracy_gap_se']:.1f} | "
        f"{largest_class_gap(r, class_names)} "
        f"| {t['within_class_distance']:.2f} | {s['within_class_distance']:.2f} "
        f"| {t['precision']:.2f} / {s['precision']:.2f} | {t['recall']:.2f} / {s['recall']:.2f} "
        f"| {r['paired_relative_error']:.3f} | {r['nearest_teacher_s']:g} | {t['nfe_per_image']:g} / "
        f"{s['nfe_per_image']:g} "
        f"| {t['samples_per_s']:.0f} / {s['samples_per_s']:.0f} | {r['throughput_ratio']:.2f} "
        f"| {yes(r['student_matches']['fd'])}, {yes(r['student_matches']['accuracy'])} |"
    )


def paraphrase_lines(h: dict) -> list:
    lines = [
        "",
        f"## Held-out paraphrases (s = {h['s']:g})",
        "",
        f"{h['prompts']} prompts never used in training (new templates and new words, e.g. "
        + ", ".join(f'"{p}"' for p in h["examples"][:3])
        + f"), {h['samples']} samples per model, "
        "classified against the class each prompt names:",
        "",
    ]
    columns = [(f"all {h['prompts']} prompts", "{m}_accuracy")]
    if "teacher_accuracy_new_words" in h:  # known words in new templates, apart from words never trained on
        columns += [
            (f"{h['prompts'] - h['new_word_prompts']} with training words, new templates", "{m}_accuracy_known_words"),
            (f"{h['new_word_prompts']} with new words", "{m}_accuracy_new_words"),
        ]
    if "teacher_accuracy_encoder_placed" in h:
        columns.append(
            (
                f"{h['encoder_placed_prompts']} the encoder places (linear probe on the training captions)",
                "{m}_accuracy_encoder_placed",
            )
        )
    if "teacher_encoder_limit" in h:
        columns.append(("all, expected if the encoder were the only limit", "{m}_encoder_limit"))
    lines += ["| model | " + " | ".join(title for title, _ in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    lines += [f"| {m} | " + " | ".join(f"{100 * h[key.format(m=m)]:.1f}%" for _, key in columns) + " |" for m in MODELS]
    if "teacher_encoder_limit" in h:
        lines += [
            "",
            "The last column is what to expect if each prompt the encoder places were drawn as well as its class's "
            "training prompt at this s (per class in report.json), and every other prompt missed.",
        ]
    if "per_prompt" in h:
        hardest = sorted(h["per_prompt"].items(), key=lambda kv: kv[1]["teacher"])[:6]
        lines += [
            "",
            "Hardest prompts (teacher / student): "
            + "; ".join(f'"{p}" {100 * a["teacher"]:.0f}% / {100 * a["student"]:.0f}%' for p, a in hardest)
            + ". Every prompt's figure is in report.json.",
        ]
    return lines


def nfe_lines(nfe: dict) -> list:
    lines = [f"## FD against network evaluations per image, s = {nfe['s']:g} (fd_vs_nfe.png)", ""]
    lines += ["| model | steps | NFE | FD | accuracy |", "| --- | --- | --- | --- | --- |"]
    for name, points in nfe["curves"].items():
        lines += [
            f"| {name} | {p['steps']} | {p['nfe']} | {p['fd']:.2f} | {100 * p['accuracy']:.1f}% |" for p in points
        ]
    if nfe["stage1"] is None:
        lines += ["", "The stage-1 student the rounds started from was not found: its curve is left out."]
    return lines


def speed_lines(v: dict) -> list:
    """The speed measurements of `benchmarks/run.py` as a markdown heading and table."""
    return [
        f"## Speed (s = {v['s']:g}, {v['n']} samples, {v['steps']} steps, measured side by side in one run)",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| student / teacher samples per second | {v['student_over_teacher_samples_per_s']:.2f}x |",
        f"| our CFG sampling time / plain diffusers loop | {v['ours_over_plain_diffusers_time']:.3f} (max "
        f"pixel difference {v['ours_vs_plain_max_abs_difference']:.1e}) |",
        f"| sampler efficiency (network time / total), teacher | {v['sampler_efficiency_teacher']:.3f} |",
        f"| sampler efficiency, student | {v['sampler_efficiency_student']:.3f} |",
        f"| teacher training, ours / plain fp32 loop (steps/s, batch {v['batch_size']}) | "
        f"{v['train_ours_over_plain']:.2f}x "
        f"({v['train_steps_per_s_ours']:.2f} vs {v['train_steps_per_s_plain_fp32']:.2f}) |",
        f"| plain loop with bf16 autocast (steps/s) | {v['train_steps_per_s_plain_bf16_autocast']:.2f} |",
    ]


def write_report(evaluation, out) -> None:
    """Write report.json, report.md, the plots, samples.png and (text models) held_out_prompts.png.

    They are written into a staging folder and moved into `out` together, report.json last, so a failed
    write (a full disk) leaves no report that looks complete.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report, grids, names = evaluation.report, evaluation.grids, evaluation.report["class_names"]
    with staged(out, last=("report.json",)) as stage:
        write_text(stage / "report.json", json.dumps(report, indent=2) + "\n")
        write_text(stage / "report.md", markdown(report))
        plot_report(report, stage)
        if report.get("fd_vs_nfe"):
            nfe = report["fd_vs_nfe"]
            plot_nfe(nfe["curves"], report["fd_noise_floor"], stage / "fd_vs_nfe.png", nfe["s"])
        rows = [f"s={r['s']:g}" + ("*" if r["extrapolated"] else "") for r in report["rows"]]
        panels = {"teacher: CFG": grids["teacher"], "student: 1 pass (* extrapolated s)": grids["student"]}
        save_image(labelled_panels(panels, rows, names), stage / "samples.png")
        if evaluation.paraphrase_grids:
            save_paraphrase_grid(evaluation.paraphrase_grids, names, stage / "held_out_prompts.png")


def save_paraphrase_grid(paraphrases: dict, names: list, path: Path):
    per_row = len(paraphrases["prompts"]) // len(names)
    shape = lambda images: images.reshape(len(names), per_row, *images.shape[1:]).transpose(0, 1)  # noqa: E731
    panels = {f"{name}, s={PARAPHRASE_S:g}": shape(paraphrases[name]) for name in MODELS}
    save_image(labelled_panels(panels, [f"paraphrase {i + 1}" for i in range(per_row)], names), path)
