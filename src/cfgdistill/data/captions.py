"""Captions for text-conditioned training, built from class names through templates and synonyms.

A second set of paraphrases (new templates, new words) is never trained on; evaluation uses it to test
whether a model generalises beyond its training wording.
"""

import torch

TEMPLATES = (
    "{}",
    "a photo of {}",
    "a picture of {}",
    "an image of {}",
    "a product photo of {}",
    "a black and white photo of {}",
    "a close-up of {}",
    "a catalogue image of {}",
)
HELD_OUT_TEMPLATES = ("a grayscale snapshot showing {}", "this is {}", "someone photographed {}")

# class -> (words used in training, words kept out of training)
SYNONYMS = {
    "fashion-mnist": {
        "T-shirt/top": (["a t-shirt", "a top", "a tee"], ["a tank top"]),
        "Trouser": (["a pair of trousers", "pants", "a pair of jeans"], ["a pair of slacks"]),
        "Pullover": (["a pullover", "a sweater", "a jumper"], ["a knit sweater"]),
        "Dress": (["a dress", "a gown", "a frock"], ["a sundress"]),
        "Coat": (["a coat", "a jacket", "an overcoat"], ["a parka"]),
        "Sandal": (["a sandal", "an open shoe", "a flip-flop"], ["a beach sandal"]),
        "Shirt": (["a shirt", "a button-up shirt", "a blouse"], ["a dress shirt"]),
        "Sneaker": (["a sneaker", "a trainer", "a running shoe"], ["an athletic shoe"]),
        "Bag": (["a bag", "a handbag", "a purse"], ["a tote"]),
        "Ankle boot": (["an ankle boot", "a boot", "a short boot"], ["a leather bootie"]),
    },
    "digits": {
        str(d): ([f"the digit {d}", word, f"the number {d}"], [f"a handwritten {word}"])
        for d, word in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    },
}


def class_words(dataset: str, class_names: list) -> dict:
    """Training and held-out words per class; a folder's class names stand for themselves."""
    known = SYNONYMS.get(dataset, {})
    return {name: known.get(name, ([name.replace("_", " ")], [])) for name in class_names}


def captions(dataset: str, class_names: list) -> tuple:
    """({class: training prompts}, {class: held-out paraphrases}); no held-out prompt is a training prompt."""
    train, held_out = {}, {}
    for name, (words, new_words) in class_words(dataset, class_names).items():
        train[name] = [t.format(w) for w in words for t in TEMPLATES]
        held_out[name] = [t.format(w) for w in words[:1] + new_words for t in HELD_OUT_TEMPLATES]
        held_out[name] += [TEMPLATES[1].format(w) for w in new_words]
    seen = {p for prompts in train.values() for p in prompts}
    assert not seen & {p for prompts in held_out.values() for p in prompts}
    return train, held_out


def new_words(dataset: str, class_names: list) -> dict:
    """{class: words only the held-out prompts use}."""
    return {name: words for name, (_, words) in class_words(dataset, class_names).items()}


def uses_new_word(prompts: list, class_names: list, new_words: dict) -> torch.Tensor:
    """For (prompt, class index) pairs: does the prompt name its class with a word kept out of training?"""
    return torch.tensor(
        [any(p.endswith(w) for w in new_words.get(class_names[c], [])) for p, c in prompts], dtype=torch.bool
    )
