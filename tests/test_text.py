"""Text conditioning: captions, the offline MiniLM encoder and its cache, negative prompts, a text train →
distill → sample run."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.checkpoint import load as load_checkpoint
from cfgdistill.cli import main
from cfgdistill.conditioning import ENCODER, NULL_PROMPT, TEXT_DIM, TextConditioning, prompt_encoder
from cfgdistill.data import FASHION_CLASSES
from cfgdistill.data.captions import captions
from cfgdistill.guidance import guided
from cfgdistill.guidance.rules import cfg
from cfgdistill.guidance.sampling import generate


def cfg_prediction(model, x_t, t, cond, s, negative=None):
    return guided(model, s, negative=negative)(x_t, t, cond)


def test_captions_keep_paraphrases_out_of_training():
    train, held_out = captions("fashion-mnist", FASHION_CLASSES)
    assert set(train) == set(held_out) == set(FASHION_CLASSES)
    seen = {p for prompts in train.values() for p in prompts}
    unseen = [p for prompts in held_out.values() for p in prompts]
    assert not seen & set(unseen) and len(unseen) == len(set(unseen))
    assert "a photo of a sneaker" in train["Sneaker"] and "a photo of an athletic shoe" in held_out["Sneaker"]
    assert len({len(v) for v in held_out.values()}) == 1  # the same number per class, for the grid
    folder_train, _ = captions("/some/folder", ["red_car", "tree"])
    assert "a photo of red car" in folder_train["red_car"]


def test_each_distinct_prompt_is_encoded_once():
    encode = prompt_encoder()
    assert prompt_encoder() is encode  # one encoder per process
    before = encode.encoded
    first = encode(["a knitted scarf", "a knitted scarf", "a felt hat"])
    assert encode.encoded == before + 2
    again = encode(["a felt hat", "a knitted scarf"])
    assert encode.encoded == before + 2
    assert torch.equal(again[1], first[0]) and first.shape == (3, TEXT_DIM)
    similar = torch.cosine_similarity(*encode(["a sneaker", "a running shoe"]), dim=0)
    different = torch.cosine_similarity(*encode(["a sneaker", "a dress"]), dim=0)
    assert similar > different


def test_training_draws_reuse_the_encoded_table():
    names = ["Sneaker", "Dress"]
    conditioning = TextConditioning.for_dataset("fashion-mnist", names)
    table, null_row, counts, _ = conditioning.table
    encoded = prompt_encoder().encoded
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 500)
    cond = conditioning.draw(labels, g, 0.5)
    assert prompt_encoder().encoded == encoded  # drawing never calls the encoder
    null = (cond == conditioning.null).all(1)
    assert 0.45 < null.float().mean() < 0.55
    rows = {tuple(r.tolist()) for r in table[: counts[0]]}
    assert all(tuple(c.tolist()) in rows for c in cond[(labels == 0) & ~null])  # a sneaker gets sneaker prompts
    assert torch.equal(conditioning.null, prompt_encoder()([NULL_PROMPT])[0])


def test_negative_prompt_algebra_against_separate_passes():
    model = tiny_denoiser(text_dim=TEXT_DIM)
    with torch.no_grad():
        model.null_text.normal_()
    g = torch.Generator().manual_seed(0)
    x_t, t = torch.randn(4, 1, 8, 8, generator=g), torch.tensor([10, 200, 500, 900])
    pos, neg = torch.randn(4, TEXT_DIM, generator=g), torch.randn(4, TEXT_DIM, generator=g)
    with torch.no_grad():
        p_pos, p_neg, p_null = model(x_t, t, pos), model(x_t, t, neg), model(x_t, t, None)
        for s in (0.0, 1.0, 2.5):
            guided = cfg_prediction(model, x_t, t, pos, s, negative=neg)
            assert torch.allclose(guided, p_neg + s * (p_pos - p_neg), atol=1e-5)
        assert torch.allclose(cfg_prediction(model, x_t, t, pos, 3.0), cfg(p_pos, p_null, 3.0), atol=1e-5)
        assert torch.allclose(p_null, model(x_t, t, model.null_text.expand(4, -1)))


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    quiet = ["--quiet", "--validate-every", "2", "--batch-size", "16", "--block-out-channels", "8,16"]
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--conditioning",
                "text",
                "--out",
                str(root / "teacher"),
                "--steps",
                "3",
                *quiet,
            ]
        )
        == 0
    )
    quiet = quiet[:-2]
    assert (
        main(["distill", "--teacher", str(root / "teacher"), "--out", str(root / "student"), "--steps", "3", *quiet])
        == 0
    )
    return root


def test_a_text_teacher_and_student_sample_from_prompts(text_runs, capsys, tmp_path):
    meta = json.loads((text_runs / "teacher" / "cfgdistill.json").read_text())["conditioning"]
    assert meta["type"] == "text" and meta["encoder"] == ENCODER and "the digit 3" in meta["training_prompts"]["3"]
    prompts = ["--prompt", "the digit 3", "--prompt", "a handwritten seven", "--n", "4", "--steps", "2", "--quiet"]
    for kind in ("teacher", "student"):
        argv = ["sample", "--model", str(text_runs / kind), "--out", str(tmp_path / f"{kind}.png"), *prompts]
        assert main([*argv, "--out-array", str(tmp_path / f"{kind}.npy")]) == 0, capsys.readouterr().err
    negative = ["--prompt", "the digit 3", "--negative-prompt", "the digit 8", "--steps", "2", "--quiet"]
    out = ["--out", str(tmp_path / "n.png")]
    assert main(["sample", "--model", str(text_runs / "teacher"), *out, *negative]) == 0
    code = main(["sample", "--model", str(text_runs / "student"), *out, *negative])
    err = capsys.readouterr().err
    assert code == 1 and "takes no negative condition" in err and len(err.strip().splitlines()) == 1


def benchmark_module():
    path = Path(__file__).parents[1] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("benchmark_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["class", "text"])
def test_our_sampler_equals_the_benchmarks_plain_diffusers_loop(kind, text_runs, schedule):
    """The bench times our CFG loop against a plain one written on diffusers; both must draw the same pixels."""
    if kind == "text":  # a trained v-prediction checkpoint
        checkpoint = load_checkpoint(text_runs / "teacher")
        model, schedule, cond = (
            checkpoint.model,
            checkpoint.process,
            prompt_encoder()(["the digit 3", "a handwritten seven", "nine"]),
        )
    else:
        model, cond = tiny_denoiser(), torch.tensor([3, 7, 9])
    plain_cfg_loop = benchmark_module().plain_cfg_loop
    ours = generate(model, schedule, cond, s=2.5, steps=4, seed=0, batch_size=2)
    plain = plain_cfg_loop(model, schedule, cond, 2.5, 4, seed=0)
    assert torch.allclose(ours, plain, atol=1e-5)
    assert not torch.allclose(plain, plain_cfg_loop(model, schedule, cond, 1.0, 4, seed=0), atol=1e-3)


def test_a_text_checkpoint_reloads_to_identical_output(text_runs):
    checkpoint = load_checkpoint(text_runs / "student")
    assert checkpoint.model.config.text_dim == TEXT_DIM
    again = load_checkpoint(text_runs / "student")
    x, cond = torch.randn(2, 1, 8, 8), prompt_encoder()(["the digit 1", "nine"])
    with torch.no_grad():
        assert torch.equal(
            checkpoint.model(x, torch.tensor([5, 600]), cond, s=2.0),
            again.model(x, torch.tensor([5, 600]), cond, s=2.0),
        )
    assert not torch.equal(checkpoint.model.null_text, torch.zeros(TEXT_DIM))  # the encoder's "", not a blank


def test_evaluation_reports_held_out_paraphrases(text_runs):
    from cfgdistill.config import EvaluateConfig
    from cfgdistill.evaluation.markdown import markdown
    from cfgdistill.evaluation.report import evaluate

    teacher, student = load_checkpoint(text_runs / "teacher"), load_checkpoint(text_runs / "student")
    evaluation = evaluate(teacher, student, EvaluateConfig(guidance=[1.0, 3.0], steps=2, n=20, quiet=True))
    report = evaluation.report
    h = report["held_out_paraphrases"]
    assert h["prompts"] == 70 and h["s"] == 3.0
    assert 0 <= h["teacher_accuracy"] <= 1 and 0 <= h["student_accuracy"] <= 1
    assert evaluation.paraphrase_grids["teacher"].shape == (70, 1, 8, 8)
    # 4 of each digit's 7 paraphrases use a word never trained on ("a handwritten seven"); the split adds up
    assert h["new_word_prompts"] == 40 and len(h["per_prompt"]) == 70
    assert "this is a handwritten seven" in h["per_prompt"] and "this is the digit 7" in h["per_prompt"]
    for m in ("teacher", "student"):
        overall = (30 * h[f"{m}_accuracy_known_words"] + 40 * h[f"{m}_accuracy_new_words"]) / 70
        assert abs(overall - h[f"{m}_accuracy"]) < 1e-6
        assert abs(sum(a[m] for a in h["per_prompt"].values()) / 70 - h[f"{m}_accuracy"]) < 1e-6
        placed = [a[m] for a in h["per_prompt"].values() if a["encoder_places"]]
        assert len(placed) == h["encoder_placed_prompts"] > 0
        assert abs(sum(placed) / len(placed) - h[f"{m}_accuracy_encoder_placed"]) < 1e-6
        # the encoder-limited expectation: a placed prompt scores its class's accuracy on training prompts at s = 3
        per_class = report["rows"][1][m]["per_class_accuracy"]
        expected = 0.0
        for a in h["per_prompt"].values():
            if a["encoder_places"]:
                expected += per_class[int(a["class"])] / 70
        assert abs(h[f"{m}_encoder_limit"] - expected) < 1e-6
    assert "expected if the encoder were the only limit" in markdown(report)


def test_encoder_readouts_name_the_class_of_an_unseen_prompt():
    from cfgdistill.evaluation.encoder import encoder_readouts

    train = {"cat": ["a cat", "a kitten", "a photo of a cat"], "car": ["a car", "an automobile", "a photo of a car"]}
    prompts = ["a picture of a kitten", "someone drove an automobile", "a tabby cat asleep"]
    readouts = encoder_readouts(train, prompts, ["cat", "car"])
    encode = prompt_encoder()
    captions = [(p, c) for c, name in enumerate(train) for p in train[name]]
    for i, prompt in enumerate(prompts):  # nearest caption, one cosine at a time
        cosine = [float(encode([prompt])[0] @ encode([caption])[0]) for caption, _ in captions]
        assert readouts["nearest_caption"][i] == captions[cosine.index(max(cosine))][1]
    assert readouts["linear_probe"].tolist() == [0, 1, 0]


def test_the_encoder_limit_scores_placed_prompts_by_their_class_and_the_rest_as_misses():
    from cfgdistill.evaluation.paraphrases import encoder_limit

    per_prompt = {
        "a coat": {"class": "coat", "encoder_places": True},
        "a parka": {"class": "coat", "encoder_places": False},
        "a tote": {"class": "bag", "encoder_places": False},
        "a bag": {"class": "bag", "encoder_places": True},
    }
    assert abs(encoder_limit(per_prompt, ["bag", "coat"], [0.5, 0.75]) - (0.75 + 0 + 0 + 0.5) / 4) < 1e-12
    assert encoder_limit(per_prompt, ["bag", "coat"], [1.0, 1.0]) == 0.5  # 2 of 4 placed


def test_quiet_sampling_of_a_text_model_prints_nothing(text_runs, tmp_path):
    """The encoder loads without a progress bar: --quiet leaves stderr empty."""
    import subprocess
    import sys

    argv = [
        sys.executable,
        "-m",
        "cfgdistill",
        "sample",
        "--model",
        str(text_runs / "teacher"),
        "--prompt",
        "nine",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "x.png"),
        "--quiet",
    ]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
