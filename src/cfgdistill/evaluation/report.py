"""`cfgdistill evaluate`: quality against guidance scale for teacher (CFG) and student, side by side."""

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..conditioning import condition_for, uses_new_word
from ..data import load_dataset
from ..images import labelled_panels, save_image
from .classifier import load_classifier, predict
from .compare import nearest_scale, paired_error, timed_sample
from .encoder import encoder_readouts
from .metrics import FrechetDistance, accuracy, embed, paired_gap_se, per_class_accuracy, precision_recall, within_class_distance
from .plots import plot_report

DEFAULT_GUIDANCE = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
PARAPHRASE_S = 3.0
MODELS = ("teacher", "student")


def quality(classifier, fd, real_features, images, labels) -> dict:
    features = embed(classifier, images)
    precision, recall = precision_recall(real_features, features)
    return {
        "fd": fd(images),
        "accuracy": accuracy(classifier, images, labels),
        "within_class_distance": within_class_distance(features, labels),
        "precision": precision,
        "recall": recall,
    }


def matches(row: dict, fd_noise_floor: float) -> dict:
    """The student matches the teacher when its FD is within 10% or within the noise floor, and accuracy within 1 point."""
    t, s = row["teacher"], row["student"]
    return {
        "fd": s["fd"] <= t["fd"] + max(0.10 * t["fd"], fd_noise_floor),
        "accuracy": abs(s["accuracy"] - t["accuracy"]) <= 0.01,
    }


def evaluate(teacher, student, guidance=DEFAULT_GUIDANCE, steps=25, n=360, sampler="ddim", seed=0, progress=True) -> dict:
    """Metrics per s for teacher and student at the same steps, seeds and labels, against the held-out real split."""
    data_name, image_shape = teacher.meta["data"]["name"], tuple(teacher.meta["data"]["image_shape"])
    classifier, classifier_accuracy = load_classifier(data_name, progress, image_shape)
    real = load_dataset(data_name, "test", image_shape)
    n = min(n, len(real))
    train_images = load_dataset(data_name, "train", image_shape).images  # disjoint from the held-out split
    floor_set = train_images[torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:n]]
    fd = FrechetDistance(classifier, real.images[:n])
    real_features = embed(classifier, real.images[:n])
    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes + 1)[:n]
    cond = condition_for(teacher.meta["conditioning"], labels=labels)  # a text model gets each class's first prompt
    low, high = student.model.config.guidance_range
    rows, grids, images = [], {name: [] for name in MODELS}, {name: {} for name in MODELS}
    for s in tqdm(guidance, desc="evaluate", disable=not progress):
        runs = {
            name: timed_sample(ckpt.model, ckpt.noise_schedule, cond, s, steps, sampler, seed)
            for name, ckpt in zip(MODELS, (teacher, student))
        }
        row = {"s": s, "extrapolated": not low <= s <= high, "paired_relative_error": paired_error(runs["student"].images, runs["teacher"].images)}
        for name, run in runs.items():
            row[name] = quality(classifier, fd, real_features, run.images, labels)
            row[name].update(samples_per_s=run.samples_per_second, nfe_per_image=run.nfe_per_image)
            grids[name].append(run.images[: teacher.num_classes])
            images[name][s] = run.images
        row["throughput_ratio"] = row["student"]["samples_per_s"] / row["teacher"]["samples_per_s"]
        hits = [predict(classifier, runs[name].images) == labels for name in MODELS]
        row["accuracy_gap_se"] = paired_gap_se(*hits)  # the gap's spread from sampling alone: is a miss noise?
        for name, hit in zip(MODELS, hits):  # where a gap comes from: one hard class, or all of them
            row[name]["per_class_accuracy"] = per_class_accuracy(hit, labels, teacher.num_classes)
        rows.append(row)
    floor = fd(floor_set)
    for row in rows:
        row["student_matches"] = matches(row, floor)
        row["nearest_teacher_s"] = nearest_scale(images["student"][row["s"]], images["teacher"])
    paraphrases, names = None, teacher.meta["conditioning"]["class_names"]
    if teacher.meta["conditioning"]["type"] == "text":
        paraphrases = held_out_paraphrases(teacher, student, classifier, steps, sampler, seed, n)
        summary = paraphrases["summary"]
        for row in (row for row in rows if row["s"] == PARAPHRASE_S):
            for name in MODELS:
                summary[f"{name}_encoder_limit"] = encoder_limit(summary["per_prompt"], names, row[name]["per_class_accuracy"])
    return {
        "dataset": data_name,
        "class_names": names,
        "samples_per_scale": n,
        "steps": steps,
        "sampler": sampler,
        "seed": seed,
        "student_trained_range": [low, high],
        "classifier_held_out_accuracy": classifier_accuracy,
        "real_accuracy": accuracy(classifier, real.images[:n], real.labels[:n]),
        "fd_noise_floor": floor,
        "rows": rows,
        "held_out_paraphrases": paraphrases and paraphrases.pop("summary"),
        "grids": {name: torch.stack(images) for name, images in grids.items()},
        "paraphrase_grids": paraphrases,
    }


def held_out_paraphrases(teacher, student, classifier, steps, sampler, seed, n) -> dict:
    """Accuracy at s = PARAPHRASE_S on prompts never used in training, each naming its class (about n samples).

    Besides all prompts, it reports two splits: training words in new templates apart from words never
    trained on, and the prompts the encoder alone places in their class (a linear probe fitted on the
    training captions), so that a miss can be laid at the encoder's door or the denoiser's.
    """
    meta = teacher.meta["conditioning"]
    names = meta["class_names"]
    prompts = [(p, c) for c, name in enumerate(names) for p in meta["held_out_prompts"][name]]
    repeats = max(1, n // len(prompts))
    text = [p for p, _ in prompts for _ in range(repeats)]
    labels = torch.tensor([c for _, c in prompts for _ in range(repeats)])
    cond = condition_for(meta, prompts=text)
    summary = {"s": PARAPHRASE_S, "prompts": len(prompts), "samples": len(text), "examples": [p for p, _ in prompts[:: len(prompts) // len(names)]]}
    new = uses_new_word(prompts, names, meta.get("held_out_new_words", {}))
    placed = encoder_readouts(meta["training_prompts"], [p for p, _ in prompts], names)["linear_probe"] == labels[::repeats]
    splits = {"known_words": ~new, "new_words": new} if new.any() and not new.all() else {}
    splits["encoder_placed"] = placed
    summary["new_word_prompts"], summary["encoder_placed_prompts"] = int(new.sum()), int(placed.sum())
    result, summary["per_prompt"] = {}, {p: {"class": names[c], "encoder_places": bool(ok)} for (p, c), ok in zip(prompts, placed)}
    for name, ckpt in zip(MODELS, (teacher, student)):
        images = timed_sample(ckpt.model, ckpt.noise_schedule, cond, PARAPHRASE_S, steps, sampler, seed).images
        hits = (predict(classifier, images) == labels).float().view(len(prompts), repeats).mean(1)
        summary[f"{name}_accuracy"] = hits.mean().item()
        for split, chosen in splits.items():
            if chosen.any():
                summary[f"{name}_accuracy_{split}"] = hits[chosen].mean().item()
        for (p, _), hit in zip(prompts, hits.tolist()):
            summary["per_prompt"][p][name] = hit
        result[name] = images[::repeats]  # one image per prompt, for the grid
    result["prompts"] = [p for p, _ in prompts]
    result["summary"] = summary
    return result


def encoder_limit(per_prompt: dict, class_names: list, per_class_accuracy: list) -> float:
    """The paraphrase accuracy to expect if the denoiser drew each prompt the encoder places as well as its
    class's training prompt (`per_class_accuracy`, same s) and missed every prompt the encoder puts elsewhere."""
    scores = [per_class_accuracy[class_names.index(a["class"])] if a["encoder_places"] else 0.0 for a in per_prompt.values()]
    return sum(scores) / len(scores)


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def largest_class_gap(row: dict, class_names: list) -> str:
    """The class whose teacher − student accuracy gap is largest in size, e.g. "Shirt +14"."""
    pairs = zip(row["teacher"]["per_class_accuracy"], row["student"]["per_class_accuracy"])
    gaps = {c: t - s for c, (t, s) in enumerate(pairs) if t is not None}
    c = max(gaps, key=lambda i: abs(gaps[i]), default=None)
    return f"{class_names[c]} {100 * gaps[c]:+.0f}" if c is not None and gaps[c] else "none"


def markdown(report: dict) -> str:
    lines = [
        f"# Teacher (CFG) vs student on {report['dataset']}",
        "",
        f"{report['samples_per_scale']} samples per guidance scale and model, {report['steps']} {report['sampler']} steps, "
        f"seed {report['seed']}. FD is measured in the feature space of a classifier with held-out accuracy "
        f"{100 * report['classifier_held_out_accuracy']:.1f}%, against {report['samples_per_scale']} held-out real images; "
        f"its noise floor (FD between two disjoint real sets of that size) is {report['fd_noise_floor']:.2f}. "
        f"The student was distilled on s in {report['student_trained_range']}. It matches the teacher at an s when its FD is "
        "at most the teacher's plus the larger of 10% and the noise floor, and its accuracy is within 1 point. "
        "The accuracy gap's ± is twice the standard error of the paired difference (both models see the same noise and labels); "
        "the largest class gap is the class whose own accuracy gap, in points, is largest in size; "
        "the nearest teacher s is the evaluated s whose teacher samples, from the same noise, lie nearest the student's.",
        "",
        "| s | FD teacher | FD student | acc teacher | acc student | acc gap t − s | largest class gap | diversity teacher | diversity student "
        "| precision t / s | recall t / s | paired error | nearest teacher s | NFE t / s | samples/s t / s | ratio | student matches (FD, acc) |",
        "|" + " --- |" * 17,
    ]
    for r in report["rows"]:
        t, s = r["teacher"], r["student"]
        mark = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(
            f"| {r['s']:g}{mark} | {t['fd']:.2f} | {s['fd']:.2f} | {100 * t['accuracy']:.1f}% | {100 * s['accuracy']:.1f}% "
            f"| {100 * (t['accuracy'] - s['accuracy']):+.1f} ± {200 * r['accuracy_gap_se']:.1f} | {largest_class_gap(r, report['class_names'])} "
            f"| {t['within_class_distance']:.2f} | {s['within_class_distance']:.2f} "
            f"| {t['precision']:.2f} / {s['precision']:.2f} | {t['recall']:.2f} / {s['recall']:.2f} "
            f"| {r['paired_relative_error']:.3f} | {r['nearest_teacher_s']:g} | {t['nfe_per_image']:g} / {s['nfe_per_image']:g} "
            f"| {t['samples_per_s']:.0f} / {s['samples_per_s']:.0f} | {r['throughput_ratio']:.2f} "
            f"| {yes(r['student_matches']['fd'])}, {yes(r['student_matches']['accuracy'])} |"
        )
    h = report.get("held_out_paraphrases")
    if h:
        lines += [
            "",
            f"## Held-out paraphrases (s = {h['s']:g})",
            "",
            f"{h['prompts']} prompts never used in training (new templates and new words, e.g. "
            + ", ".join(f"\"{p}\"" for p in h["examples"][:3]) + f"), {h['samples']} samples per model, "
            "classified against the class each prompt names:",
            "",
        ]
        columns = [(f"all {h['prompts']} prompts", "{m}_accuracy")]
        if "teacher_accuracy_new_words" in h:  # known words in new templates, apart from words never trained on
            columns += [(f"{h['prompts'] - h['new_word_prompts']} with training words, new templates", "{m}_accuracy_known_words"),
                        (f"{h['new_word_prompts']} with new words", "{m}_accuracy_new_words")]
        if "teacher_accuracy_encoder_placed" in h:
            columns.append((f"{h['encoder_placed_prompts']} the encoder places (linear probe on the training captions)", "{m}_accuracy_encoder_placed"))
        if "teacher_encoder_limit" in h:
            columns.append(("all, expected if the encoder were the only limit", "{m}_encoder_limit"))
        lines += ["| model | " + " | ".join(title for title, _ in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
        lines += [f"| {m} | " + " | ".join(f"{100 * h[key.format(m=m)]:.1f}%" for _, key in columns) + " |" for m in MODELS]
        if "teacher_encoder_limit" in h:
            lines += ["", "The last column is what to expect if each prompt the encoder places were drawn as well as its class's "
                      "training prompt at this s (per class in report.json), and every other prompt missed."]
        if "per_prompt" in h:
            hardest = sorted(h["per_prompt"].items(), key=lambda kv: kv[1]["teacher"])[:6]
            lines += ["", "Hardest prompts (teacher / student): " + "; ".join(
                f"\"{p}\" {100 * a['teacher']:.0f}% / {100 * a['student']:.0f}%" for p, a in hardest) + ". Every prompt's figure is in report.json."]
    if "speed" in report:
        lines += ["", *speed_lines(report["speed"])]
    return "\n".join(lines) + "\n"


def speed_lines(v: dict) -> list:
    """The speed measurements of `benchmarks/run.py` as a markdown heading and table."""
    return [
        f"## Speed (s = {v['s']:g}, {v['n']} samples, {v['steps']} steps, measured side by side in one run)",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| student / teacher samples per second | {v['student_over_teacher_samples_per_s']:.2f}x |",
        f"| our CFG sampling time / plain diffusers loop | {v['ours_over_plain_diffusers_time']:.3f} (max pixel difference {v['ours_vs_plain_max_abs_difference']:.1e}) |",
        f"| sampler efficiency (network time / total), teacher | {v['sampler_efficiency_teacher']:.3f} |",
        f"| sampler efficiency, student | {v['sampler_efficiency_student']:.3f} |",
        f"| teacher training, ours / plain fp32 loop (steps/s, batch {v['batch_size']}) | {v['train_ours_over_plain']:.2f}x "
        f"({v['train_steps_per_s_ours']:.2f} vs {v['train_steps_per_s_plain_fp32']:.2f}) |",
        f"| plain loop with bf16 autocast (steps/s) | {v['train_steps_per_s_plain_bf16_autocast']:.2f} |",
    ]


def write_report(report: dict, out: Path, class_names) -> None:
    """Write report.json, report.md, the plots and samples.png; the report itself is left as it was."""
    out.mkdir(parents=True, exist_ok=True)
    grids, paraphrases = report["grids"], report.get("paraphrase_grids")
    report = {k: v for k, v in report.items() if k not in ("grids", "paraphrase_grids")}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot_report(report, out)
    rows = [f"s={r['s']:g}" + ("*" if r["extrapolated"] else "") for r in report["rows"]]
    panels = {"teacher: CFG": grids["teacher"], "student: 1 pass (* extrapolated s)": grids["student"]}
    save_image(labelled_panels(panels, rows, class_names), out / "samples.png")
    if paraphrases:
        per_row = len(paraphrases["prompts"]) // len(class_names)
        shape = lambda images: images.reshape(len(class_names), per_row, *images.shape[1:]).transpose(0, 1)
        panels = {f"{name}, s={PARAPHRASE_S:g}": shape(paraphrases[name]) for name in MODELS}
        save_image(labelled_panels(panels, [f"paraphrase {i + 1}" for i in range(per_row)], class_names), out / "held_out_prompts.png")
