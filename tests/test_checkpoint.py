import json

import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.checkpoint import Checkpoint
from cfgdistill.checkpoint import load as load_checkpoint
from cfgdistill.data import load_dataset
from cfgdistill.errors import UserError
from cfgdistill.guidance.sampling import generate
from cfgdistill.networks import make_student


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def save_both(tmp_path, teacher, schedule, digits):
    teacher_dir = Checkpoint.create(teacher, schedule, kind="teacher", dataset=digits, training={}).save(tmp_path / "t")
    student = make_student(teacher, (1.0, 6.0))
    with torch.no_grad():
        student.guidance_in.mlp.linear_2.weight.normal_(std=0.1)  # make the student differ from the teacher
    student_dir = Checkpoint.create(student, schedule, kind="student", dataset=digits, training={}).save(tmp_path / "s")
    return student, teacher_dir, student_dir


@pytest.mark.parametrize("scale_shift", [False, True])
def test_save_load_gives_identical_samples(tmp_path, schedule, labels, digits, scale_shift):
    teacher = tiny_denoiser(scale_shift=scale_shift)
    student, teacher_dir, student_dir = save_both(tmp_path, teacher, schedule, digits)
    for model, path, s in ((teacher, teacher_dir, 3.0), (student, student_dir, 3.0)):
        loaded = load_checkpoint(path)
        assert loaded.kind == ("student" if model is student else "teacher")
        before = generate(model, schedule, labels, s=s, steps=3)
        after = generate(loaded.model, loaded.process, labels, s=s, steps=3)
        assert torch.equal(before, after)


def test_metadata_records_what_a_load_needs(tmp_path, teacher, schedule, digits):
    _, _, student_dir = save_both(tmp_path, teacher, schedule, digits)
    meta = json.loads((student_dir / "cfgdistill.json").read_text())
    assert meta["kind"] == "student" and meta["prediction_type"] == "epsilon"
    assert meta["guidance"]["trained_range"] == [1.0, 6.0]
    assert meta["conditioning"]["num_classes"] == 10 and meta["data"]["name"] == "digits"
    assert (student_dir / "denoiser" / "diffusion_pytorch_model.safetensors").is_file()


def test_missing_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(UserError, match="not a cfgdistill checkpoint"):
        load_checkpoint(tmp_path / "foreign")
    (tmp_path / "foreign" / "cfgdistill.json").write_text('{"format": "other"}')
    with pytest.raises(UserError, match="does not describe"):
        load_checkpoint(tmp_path / "foreign")


def test_damaged_weights_are_a_clear_error(tmp_path, teacher, schedule, digits):
    _, teacher_dir, _ = save_both(tmp_path, teacher, schedule, digits)
    weights = teacher_dir / "denoiser" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="cannot load the network"):
        load_checkpoint(teacher_dir)


def test_weights_of_another_layout_are_refused_not_left_random(tmp_path, teacher, schedule, digits):
    from safetensors.torch import load_file, save_file

    _, teacher_dir, _ = save_both(tmp_path, teacher, schedule, digits)
    weights = teacher_dir / "denoiser" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["label_embedding.0.weight"] = tensors.pop("label_embedding.weight")  # as an older network would name it
    save_file(tensors, weights)
    with pytest.raises(
        UserError, match=r"do not fit this version's network \(label_embedding.0.weight, label_embedding.weight\)"
    ):
        load_checkpoint(teacher_dir)


def test_a_non_empty_output_folder_is_not_overwritten(tmp_path, teacher, schedule, digits):
    _, teacher_dir, _ = save_both(tmp_path, teacher, schedule, digits)
    before = (teacher_dir / "cfgdistill.json").read_text()
    checkpoint = load_checkpoint(teacher_dir)
    with pytest.raises(UserError, match="not empty"):
        checkpoint.save(teacher_dir)
    assert (teacher_dir / "cfgdistill.json").read_text() == before
    checkpoint.save(teacher_dir, overwrite=True)
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_loading_never_unpickles(tmp_path, teacher, schedule, digits, monkeypatch):
    """A checkpoint that offers a pickled .bin instead of safetensors is refused, and torch.load is never called."""
    path = Checkpoint.create(teacher, schedule, kind="teacher", dataset=digits, training={}).save(tmp_path / "t")
    weights = path / "denoiser" / "diffusion_pytorch_model.safetensors"
    torch.save(teacher.state_dict(), weights.with_suffix(".bin"))
    weights.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on a checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(UserError, match="cannot load the network"):
        load_checkpoint(path)
