"""The held-out paraphrase study of a text model: prompts never trained on, and what the encoder alone explains.

A text-conditioned denoiser sees nothing of a prompt but its embedding. Besides all held-out prompts, the
study reports training words in new templates apart from words never trained on, and the prompts the
encoder itself places in their class (a linear probe on the training captions), so that a miss can be
laid at the encoder's door or the denoiser's.
"""

import torch

from ..data.captions import uses_new_word
from .classifier import predict
from .compare import learnt_rule, timed_sample
from .encoder import encoder_readouts

PARAPHRASE_S = 3.0
MODELS = ("teacher", "student")


def held_out_paraphrases(teacher, student, classifier, steps, sampler, seed, n) -> tuple:
    """Accuracy at s = PARAPHRASE_S on prompts never used in training, each naming its class (about n samples).

    Returns (summary, grids): the JSON-able figures, and one image per prompt and model.
    """
    conditioning = teacher.conditioning
    names = conditioning.class_names
    prompts = [(p, c) for c, name in enumerate(names) for p in conditioning.held_out_prompts[name]]
    repeats = max(1, n // len(prompts))
    labels = torch.tensor([c for _, c in prompts for _ in range(repeats)])
    cond = conditioning.encode(prompts=[p for p, _ in prompts for _ in range(repeats)])
    summary = {
        "s": PARAPHRASE_S,
        "prompts": len(prompts),
        "samples": len(labels),
        "examples": [p for p, _ in prompts[:: len(prompts) // len(names)]],
    }
    splits = prompt_splits(conditioning, prompts, labels[::repeats], summary)
    grids = {"prompts": [p for p, _ in prompts]}
    for name, ckpt in zip(MODELS, (teacher, student)):
        own = ckpt.grid or steps  # a few-step student's own grid
        run = timed_sample(ckpt.model, ckpt.process, cond, PARAPHRASE_S, own, sampler, seed, **learnt_rule(student))
        images = run.images
        hits = (predict(classifier, images) == labels).float().view(len(prompts), repeats).mean(1)
        summary[f"{name}_accuracy"] = hits.mean().item()
        for split, chosen in splits.items():
            if chosen.any():
                summary[f"{name}_accuracy_{split}"] = hits[chosen].mean().item()
        for (p, _), hit in zip(prompts, hits.tolist()):
            summary["per_prompt"][p][name] = hit
        grids[name] = images[::repeats]  # one image per prompt, for the grid
    return summary, grids


def prompt_splits(conditioning, prompts: list, labels: torch.Tensor, summary: dict) -> dict:
    """{split name: which prompts belong to it}; records the counts and each prompt's class in `summary`."""
    names = conditioning.class_names
    new = uses_new_word(prompts, names, conditioning.new_words)
    readout = encoder_readouts(conditioning.train_prompts, [p for p, _ in prompts], names)
    placed = readout["linear_probe"] == labels
    splits = {"known_words": ~new, "new_words": new} if new.any() and not new.all() else {}
    splits["encoder_placed"] = placed
    summary["new_word_prompts"], summary["encoder_placed_prompts"] = int(new.sum()), int(placed.sum())
    summary["per_prompt"] = {p: {"class": names[c], "encoder_places": bool(ok)} for (p, c), ok in zip(prompts, placed)}
    return splits


def encoder_limit(per_prompt: dict, class_names: list, per_class_accuracy: list) -> float:
    """The paraphrase accuracy to expect if the denoiser drew each prompt the encoder places as well as its
    class's training prompt (`per_class_accuracy`, same s) and missed every prompt the encoder puts elsewhere."""
    scores = [
        per_class_accuracy[class_names.index(a["class"])] if a["encoder_places"] else 0.0 for a in per_prompt.values()
    ]
    return sum(scores) / len(scores)
