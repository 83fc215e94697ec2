import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from cfgdistill.networks import Denoiser
from cfgdistill.processes import VP


def tiny_denoiser(seed: int = 0, **overrides) -> Denoiser:
    """A ~30k-parameter network; its condition embedding is widened so that cond and uncond clearly differ."""
    torch.manual_seed(seed)
    config = dict(sample_size=8, in_channels=1, num_classes=10, block_out_channels=(8, 16), attention=False)
    config.update(overrides)
    model = Denoiser(**config)
    with torch.no_grad():
        embedding = model.text_in.weight if model.config.text_dim else model.label_embedding.weight
        embedding.normal_(std=1.0)
    return model.eval()


@pytest.fixture(scope="session", autouse=True)
def cache(tmp_path_factory):
    """One classifier cache for the whole run, never the user's own."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CFGDISTILL_CACHE", str(path))
        yield path


@pytest.fixture
def teacher():
    return tiny_denoiser()


@pytest.fixture
def schedule():
    return VP.create("epsilon")


@pytest.fixture
def labels():
    return torch.arange(10).repeat(2)


# Every fuzz of the suite: a fixed number of derandomised examples; HYPOTHESIS_PROFILE=nightly runs many more.
QUIET_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
for profile, examples in (("ci", 12), ("nightly", 400)):
    settings.register_profile(
        profile, max_examples=examples, derandomize=True, deadline=None, suppress_health_check=QUIET_CHECKS
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
