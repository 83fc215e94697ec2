"""Which class the text encoder alone gives a prompt: readouts of its embedding, no diffusion model.

A text-conditioned denoiser sees nothing of a prompt but its embedding. Readouts fitted on the training
captions' embeddings tell which held-out prompts the encoder itself puts among their class, so that a
report can tell the encoder's misses from the denoiser's.
"""

import torch
from sklearn.linear_model import LogisticRegression

from ..conditioning import prompt_encoder


def encoder_readouts(train_prompts: dict, prompts: list, class_names: list) -> dict:
    """For each prompt, the class index named by its nearest training caption (cosine) and by a
    logistic-regression probe fitted on the training captions; `train_prompts` is {class: captions}."""
    encode = prompt_encoder()
    x_train = encode([p for name in class_names for p in train_prompts[name]])
    y_train = torch.tensor([c for c, name in enumerate(class_names) for _ in train_prompts[name]])
    x = encode(list(prompts))
    probe = LogisticRegression(max_iter=2000).fit(x_train.numpy(), y_train.numpy())
    return {
        "nearest_caption": y_train[(x @ x_train.T).argmax(1)],
        "linear_probe": torch.from_numpy(probe.predict(x.numpy())).long(),
    }
