"""A pipeline a user brings, and what cfgdistill keeps for it: folders left odd, a damaged prompt cache, a resume
on other prompts. Each is refused in one line or repaired with a note, never a traceback, never an input changed
(the one-line rows of each kind are in docs/errors.md; here the cases that need a run, and the fuzz)."""

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file
from tiny_pipelines import sd_pipeline, snapshot

from cfgdistill.cli import main
from cfgdistill.pretrained.prompts import read_cache

RUN = ["--steps", "2", "--batch-size", "2", "--checkpoint-every", "1", "--quiet", "--resolution", "16"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    sd_pipeline().save_pretrained(root / "sd")
    (root / "prompts.txt").write_text("a coat\na shoe\n")
    return root


def distill(pipe, out, prompts="prompts.txt", *extra) -> int:
    return main(
        ["distill", "--teacher", str(pipe / "sd"), "--prompts", str(pipe / prompts), "--out", str(out), *RUN, *extra]
    )


def test_a_resume_on_other_prompts_of_the_same_number_is_refused_naming_them(pipe, tmp_path, capsys):
    assert distill(pipe, tmp_path / "run") == 0
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-0000002")
    (tmp_path / "other.txt").write_text("a hat\na bag\n")
    shutil.copy(tmp_path / "other.txt", pipe / "other.txt")
    code = distill(pipe, tmp_path / "run", "other.txt", "--resume", "latest")
    err = capsys.readouterr().err
    assert code == 1 and "written with prompts = 2 prompts, sha256" in err and len(err.strip().splitlines()) == 1


def damaged(cache: Path, how: str):
    data = cache.read_bytes()
    if how == "truncated":
        cache.write_bytes(data[: len(data) // 2])
    elif how == "header":
        cache.write_bytes(b"\xff" * 8 + data[8:])
    elif how == "shape":
        key = torch.frombuffer(bytearray(cache.stem.encode()), dtype=torch.uint8)
        save_file({"rows": torch.zeros(5, 3), "null": torch.zeros(3), "key": key}, cache)
    else:  # rows that are not numbers
        key = torch.frombuffer(bytearray(cache.stem.encode()), dtype=torch.uint8)
        save_file({"rows": torch.full((2, 3), float("nan")), "null": torch.zeros(3), "key": key}, cache)


@pytest.mark.parametrize("how", ["truncated", "header", "shape", "nan"])
def test_a_damaged_prompt_cache_is_rebuilt_with_a_note_never_used(pipe, tmp_path, monkeypatch, how, capsys):
    monkeypatch.setenv("CFGDISTILL_CACHE", str(tmp_path / "cache"))
    assert distill(pipe, tmp_path / "first") == 0
    (cache,) = (tmp_path / "cache" / "prompts").iterdir()
    good = [t.clone() for t in read_cache(cache, cache.stem, 2)[:2]]  # not the file's memory map, damaged next
    damaged(cache, how)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_cache(cache, cache.stem, 2) is None
    capsys.readouterr()
    assert distill(pipe, tmp_path / "second") == 0
    err = capsys.readouterr().err
    assert "the prompt cache" in err and "encoding the prompts again" in err
    rebuilt = read_cache(cache, cache.stem, 2)
    assert torch.equal(rebuilt[0], good[0]) and torch.equal(rebuilt[1], good[1])


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-2, 64), max_size=4),
    st.lists(st.text(max_size=12), min_size=2, max_size=2),
)


@pytest.mark.parametrize(
    "file", ["model_index.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json"]
)
@given(data=st.data())
def test_a_mutated_pipeline_folder_is_loaded_or_refused_in_one_line(file, data, pipe, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("fuzz") / "sd"
    shutil.copytree(pipe / "sd", folder)
    config = json.loads((folder / file).read_text())
    key = data.draw(st.sampled_from(sorted(config)))
    config[key] = data.draw(VALUES)
    (folder / file).write_text(json.dumps(config))
    before = snapshot(folder)
    out = tmp_path_factory.mktemp("out")
    sample = ["sample", "--model", str(folder), "--prompt", "a coat", "--n", "1", "--steps", "4", "--quiet"]
    code = main([*sample, "--out", str(out / "x.png")])
    err = capsys.readouterr().err
    assert code == 0 or (code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err), (
        key,
        config[key],
        err,
    )
    assert snapshot(folder) == before


@given(data=st.data())
def test_a_prompt_cache_with_any_bytes_changed_is_used_whole_or_not_at_all(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "k.safetensors"
    key = torch.frombuffer(bytearray(b"k"), dtype=torch.uint8)
    save_file({"rows": torch.randn(2, 6), "null": torch.zeros(6), "key": key, "layout.dim": torch.tensor(6)}, path)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cached = read_cache(path, "k", 2)
    assert cached is None or (cached[0].shape == (2, 6) and bool(torch.isfinite(cached[0]).all()))
