"""Negative avoidance: prompts that span several classes, each with one of them negated.

"a shoe" covers sandals, sneakers and ankle boots; with the negative "a sneaker", the share of samples the
classifier still calls a sneaker measures how well the negative is heeded. The teacher pays a second pass for
its negative branch (true CFG, `neg + s·(pos − neg)`); a student distilled with `--negatives` pays none.
"""

import torch

from .classifier import predict
from .compare import learnt_rule, timed_sample
from .metrics import ACCURACY_TOLERANCE, paired_gap_se

NEGATIVE_S = 3.0
GAP = 0.02  # the student's avoidance rate within 2 points of the teacher's

# dataset -> (a prompt that spans several classes, the class its negative names)
SPANNING = {
    "fashion-mnist": [  # each negates the class the teacher draws most for the prompt at s = 3
        ("a shoe", "Sneaker"),
        ("a bag or a shoe", "Bag"),
        ("a piece of clothing for the upper body", "Shirt"),
        ("a warm garment", "Coat"),
        ("a garment", "Pullover"),
        ("a piece of clothing", "Shirt"),
    ],
    "digits": [
        ("an even digit", "8"),
        ("a round digit", "0"),
        ("a digit with a loop", "6"),
        ("an odd digit", "7"),
        ("a digit with a straight stroke", "1"),
    ],
}


def negative_avoidance(teacher, student, classifier, n: int, steps, sampler, seed) -> dict | None:
    """For each spanning prompt, the share of samples in the negated class at s = NEGATIVE_S: the teacher without
    a negative, the teacher with it (two passes), the student with it (one pass); about n samples per model in
    all, the same noise for every model. None where the data has no spanning prompts or the model no text."""
    pairs, conditioning = SPANNING.get(teacher.meta.data.name), teacher.conditioning
    if not pairs or conditioning.kind != "text":
        return None
    each = max(2, n // len(pairs))
    names = conditioning.class_names
    runs = {"teacher_without": (teacher, False), "teacher": (teacher, True), "student": (student, True)}
    hits, seconds, rows = {name: [] for name in runs}, dict.fromkeys(runs, 0.0), []
    for prompt, negated in pairs:
        cond = conditioning.encode(prompts=[prompt] * each)
        negative_prompt = conditioning.class_prompts([names.index(negated)])[0]
        negative = conditioning.encode(prompts=[negative_prompt] * each)
        row = {"prompt": prompt, "negative_prompt": negative_prompt, "negated_class": negated}
        for name, (ckpt, with_negative) in runs.items():
            extra = {"negative": negative} if with_negative else {}
            run = timed_sample(
                ckpt.model, ckpt.process, cond, NEGATIVE_S, steps, sampler, seed, **learnt_rule(student), **extra
            )
            hit = predict(classifier, run.images) == names.index(negated)
            hits[name].append(hit)
            seconds[name] += run.seconds
            row[f"{name}_rate"] = hit.float().mean().item()
        rows.append(row)
    return summary(rows, {name: torch.cat(h) for name, h in hits.items()}, seconds)


def summary(rows: list, hits: dict, seconds: dict) -> dict:
    rates = {f"{name}_rate": h.float().mean().item() for name, h in hits.items()}
    gap = rates["student_rate"] - rates["teacher_rate"]
    return {
        "s": NEGATIVE_S,
        "prompts": len(rows),
        "samples_per_prompt": len(hits["student"]) // len(rows),
        **rates,
        "gap": gap,
        "gap_se": paired_gap_se(hits["student"], hits["teacher"]),
        "student_matches": abs(gap) <= GAP + ACCURACY_TOLERANCE,
        "throughput_ratio": seconds["teacher"] / seconds["student"],  # same samples: the ratio of samples/s
        "per_prompt": rows,
    }


def negative_lines(h: dict) -> list:
    """The report's section: the share of samples in the negated class, per prompt and overall."""
    lines = [
        "",
        f"## Negative prompts (s = {h['s']:g})",
        "",
        f"{h['prompts']} prompts that span several classes, each with a negative naming one of them; "
        f"{h['samples_per_prompt']} samples per prompt and model. The share still in the negated class (lower "
        "is better): the teacher without the negative, the teacher's true CFG against it (two passes per step), "
        "and the student with it in one pass.",
        "",
        "| prompt | negative | teacher, no negative | teacher | student |",
        "| --- | --- | --- | --- | --- |",
    ]
    rates = ("teacher_without_rate", "teacher_rate", "student_rate")
    for row in h["per_prompt"]:
        lines.append(
            f"| {row['prompt']} | {row['negative_prompt']} | "
            + " | ".join(f"{100 * row[k]:.1f}%" for k in rates)
            + " |"
        )
    lines.append("| **all** | | " + " | ".join(f"**{100 * h[k]:.1f}%**" for k in rates) + " |")
    verdict = "within" if h["student_matches"] else "outside"
    lines += [
        "",
        f"Student − teacher: {100 * h['gap']:+.1f} ± {100 * h['gap_se']:.1f} points ({verdict} {100 * GAP:g}); "
        f"student samples/s {h['throughput_ratio']:.2f}× the teacher's with its negative.",
    ]
    return lines
