"""Metrics on cases whose answer is known, and the evaluation report end to end."""

import json

import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.checkpoint import Checkpoint
from cfgdistill.config import EvaluateConfig
from cfgdistill.data import ImageDataset, load_dataset
from cfgdistill.evaluation import classifier as classifier_module
from cfgdistill.evaluation.markdown import write_report
from cfgdistill.evaluation.metrics import (
    FrechetDistance,
    accuracy,
    embed,
    paired_gap_se,
    per_class_accuracy,
    precision_recall,
    within_class_distance,
)
from cfgdistill.evaluation.report import GATES, evaluate, matches
from cfgdistill.networks import make_student
from cfgdistill.processes import VP


@pytest.fixture(scope="module")
def trained(cache):
    classifier, held_out_accuracy = classifier_module.load_classifier("digits", False)
    return classifier, held_out_accuracy


@pytest.fixture(scope="module")
def held_out():
    return load_dataset("digits", "test")


def test_classifier_is_accurate_and_cached(trained, cache, monkeypatch):
    classifier, held_out_accuracy = trained
    assert held_out_accuracy >= 0.97
    assert list(cache.glob("classifier-digits-*.safetensors"))
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *a, **k: pytest.fail("retrained although cached"))
    again, again_accuracy = classifier_module.load_classifier("digits", False)
    assert again_accuracy == held_out_accuracy
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))


def test_a_folders_classifier_is_cached_under_its_contents_not_its_path():
    images, labels = torch.rand(6, 1, 8, 8), torch.arange(6) % 2
    name = lambda x, names=("a", "b"): classifier_module.cache_name(
        "/my/folder", ImageDataset("/my/folder", x, labels, list(names))
    )
    assert name(images) == name(images.clone()) != name(images.reshape(6, 1, 4, 16))
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5  # one pixel of one file
    assert name(changed) != name(images) != name(images, names=("a", "c"))
    assert classifier_module.cache_name("digits", ImageDataset("digits", images, labels, ["a", "b"])) == "digits"


def test_accuracy_on_real_held_out_images_is_the_classifiers_accuracy(trained, held_out):
    classifier, held_out_accuracy = trained
    assert accuracy(classifier, held_out.images, held_out.labels) == pytest.approx(held_out_accuracy)


def test_fd_of_a_set_with_itself_is_about_zero(trained, held_out):
    fd = FrechetDistance(trained[0], held_out.images)
    assert abs(fd(held_out.images)) < 1e-3


def test_fd_grows_as_noise_is_added(trained, held_out):
    fd = FrechetDistance(trained[0], held_out.images)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(held_out.images.shape, generator=g)
    values = [fd((held_out.images + sigma * noise).clamp(-1, 1)) for sigma in (0.0, 0.1, 0.2, 0.4, 0.8)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_precision_and_recall_of_a_set_with_itself_are_one(trained, held_out):
    features = embed(trained[0], held_out.images)
    assert precision_recall(features, features) == (1.0, 1.0)


def test_precision_recall_see_a_collapsed_set():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g)
    collapsed = real[:1].repeat(300, 1) + 0.01 * torch.randn(300, 8, generator=g)
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.1


def test_within_class_distance_falls_when_diversity_falls():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(25)
    spread = torch.randn(100, 8, generator=g)
    assert within_class_distance(0.1 * spread, labels) == pytest.approx(
        0.1 * within_class_distance(spread, labels), rel=1e-5
    )


def test_paired_gap_se_is_the_textbook_standard_error():
    a = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    variance = sum((v - mean) ** 2 for v in d) / (len(d) - 1)
    assert paired_gap_se(a, b) == pytest.approx((variance / len(d)) ** 0.5)
    assert paired_gap_se(a, a) == 0.0  # identical verdicts: no spread at all


def test_per_class_accuracy_counts_each_class_on_its_own():
    hits = torch.tensor([1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    labels = torch.tensor([0, 0, 1, 1, 1, 3, 3])
    expected = []
    for c in range(4):
        mine = [bool(h) for h, l in zip(hits, labels) if l == c]
        expected.append(sum(mine) / len(mine) if mine else None)
    got = per_class_accuracy(hits, labels, 4)
    assert got[:2] + got[3:] == pytest.approx(expected[:2] + expected[3:])
    assert got[2] is None  # class 2 was never requested: no figure, not 0
    json.dumps(got, allow_nan=False)  # and the report stays valid JSON


def test_evaluate_writes_a_report_with_both_models_side_by_side(trained, tmp_path):
    data = load_dataset("digits", "train")
    schedule = VP.create()
    teacher = Checkpoint.create(tiny_denoiser(), schedule, kind="teacher", dataset=data, training={})
    student = Checkpoint.create(
        make_student(teacher.model, (1.0, 3.0)), schedule, kind="student", dataset=data, training={}
    )
    evaluation = evaluate(teacher, student, EvaluateConfig(guidance=[1.0, 4.0], steps=2, n=30, quiet=True))
    report = evaluation.report
    json.dumps(report, allow_nan=False)  # the report holds figures only, no tensors
    assert [r["extrapolated"] for r in report["rows"]] == [False, True]
    first = report["rows"][0]
    assert first["paired_relative_error"] == 0.0  # a fresh student is the conditional teacher
    assert first["accuracy_gap_se"] == 0.0  # ... so at s = 1 both are judged identically
    assert report["rows"][1]["teacher"]["nfe_per_image"] == 4 and report["rows"][1]["student"]["nfe_per_image"] == 2
    assert [r["nearest_teacher_s"] for r in report["rows"]] == [1.0, 1.0]  # ... which applies no guidance at any s
    write_report(evaluation, tmp_path)
    for name in (
        "report.json",
        "report.md",
        "fd_vs_s.png",
        "accuracy_vs_s.png",
        "fd_vs_accuracy.png",
        "diversity_vs_s.png",
        "speed.png",
        "samples.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["fd_noise_floor"] > 0 and "extrapolated" in (tmp_path / "report.md").read_text()
    for row in saved["rows"]:  # 30 labels over 10 classes: 3 each, so the class mean is the overall accuracy
        for name in ("teacher", "student"):
            assert sum(row[name]["per_class_accuracy"]) / 10 == pytest.approx(row[name]["accuracy"])
    md = (tmp_path / "report.md").read_text()
    assert "largest class gap" in md and "| none |" in md  # at s = 1 the fresh student's verdicts are the teacher's


def test_a_gap_of_exactly_the_gate_in_float32_accuracies_passes_and_one_sample_more_does_not():
    gate = dict(zip(("fd_ratio", "accuracy_gap"), GATES["stage-1"]))

    def row(teacher_hits, student_hits, n=500):
        figures = [{"fd": 10.0, "accuracy": (torch.tensor(hits) / n).item()} for hits in (teacher_hits, student_hits)]
        return dict(zip(("teacher", "student"), figures))

    assert matches(row(492, 487), 0.0, gate)["accuracy"]  # 98.4% against 97.4%: 0.01000005 in float32
    assert not matches(row(492, 486), 0.0, gate)["accuracy"]
