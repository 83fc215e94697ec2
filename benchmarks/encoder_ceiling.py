"""How far the text encoder alone carries the held-out paraphrases: no diffusion model involved.

    python benchmarks/encoder_ceiling.py [--data fashion-mnist] [--out docs/results/fashion/encoder_ceiling.json]

For each held-out prompt it asks whether its all-MiniLM-L6-v2 embedding lies nearest a training
caption of the class it names (1-nearest neighbour, cosine), and whether a logistic-regression
probe fitted on the training captions' embeddings names that class. A text-conditioned denoiser
sees nothing but these embeddings, so a prompt the encoder puts among another class's captions
is hard for any model trained on those captions alone.
"""

import argparse
import json
from pathlib import Path

import torch

from cfgdistill.data import DATASETS, FASHION_CLASSES
from cfgdistill.data.captions import captions, class_words, uses_new_word
from cfgdistill.evaluation.encoder import encoder_readouts


def class_names(data: str) -> list:
    return list(FASHION_CLASSES) if data == "fashion-mnist" else [str(d) for d in range(10)]


def ceiling(data: str) -> dict:
    names = class_names(data)
    train, held_out = captions(data, names)
    new_words = {name: words for name, (_, words) in class_words(data, names).items()}
    prompts = [(p, c) for c, name in enumerate(names) for p in held_out[name]]
    y_test = torch.tensor([c for _, c in prompts])
    readouts = encoder_readouts(train, [p for p, _ in prompts], names)
    nearest, probed = readouts["nearest_caption"], readouts["linear_probe"]
    new = uses_new_word(prompts, names, new_words)
    result = {"data": data, "prompts": len(prompts), "new_word_prompts": int(new.sum())}
    for name, guess in (("nearest_caption", nearest), ("linear_probe", probed)):
        right = (guess == y_test).float()
        result[name] = {
            "all": right.mean().item(),
            "known_words": right[~new].mean().item(),
            "new_words": right[new].mean().item(),
        }
    result["misplaced"] = {
        p: {"nearest_caption": names[a], "linear_probe": names[b]}
        for (p, c), a, b in zip(prompts, nearest.tolist(), probed.tolist())
        if c != a or c != b
    }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--out", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    result = ceiling(args.data)
    print(f"{result['prompts']} held-out prompts ({result['new_word_prompts']} with new words) on {args.data}:")
    for name in ("nearest_caption", "linear_probe"):
        r = result[name]
        print(
            f"  {name:16s} all {100 * r['all']:.1f}%   known words {100 * r['known_words']:.1f}%   new words "
            f"{100 * r['new_words']:.1f}%"
        )
    for p, guess in result["misplaced"].items():
        print(f"  {p!r}: nearest caption is {guess['nearest_caption']}, probe says {guess['linear_probe']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
