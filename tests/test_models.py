import pytest
import torch
from conftest import tiny_denoiser

from cfgdistill.networks import make_student


@pytest.fixture(params=[False, True], ids=["shift", "scale_shift"])
def either_teacher(request):
    """The tiny teacher with the embedding added to each block (the default) or scaling and shifting it (ADM)."""
    return tiny_denoiser(scale_shift=request.param)


def test_new_student_equals_teachers_conditional_prediction(either_teacher):
    teacher = either_teacher
    student = make_student(teacher, (1.0, 6.0))
    assert student.config.scale_shift == teacher.config.scale_shift
    torch.manual_seed(0)
    x_t, t, y = torch.randn(5, 1, 8, 8), torch.randint(0, 1000, (5,)), torch.arange(5)
    with torch.no_grad():
        expected = teacher(x_t, t, y)
        for s in (0.0, 1.0, 4.0, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])):
            assert torch.equal(student(x_t, t, y, s=s), expected)


def test_student_holds_the_teachers_weights_plus_a_guidance_embedding(teacher):
    student = make_student(teacher, (1.0, 6.0))
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    new = sorted(set(student_state) - set(teacher_state))
    assert new and all(k.startswith("guidance_in.") for k in new)
    assert all(torch.equal(teacher_state[k], student_state[k]) for k in teacher_state)
    assert student.config.guidance_range == (1.0, 6.0)


def test_student_output_moves_with_s_once_the_embedding_is_nonzero(teacher):
    student = make_student(teacher, (1.0, 6.0))
    with torch.no_grad():
        student.guidance_in.mlp.linear_2.weight.normal_(std=0.1)
    x_t, t, y = torch.randn(2, 1, 8, 8), torch.tensor([500, 500]), torch.tensor([3, 3])
    with torch.no_grad():
        assert not torch.allclose(student(x_t, t, y, s=1.0), student(x_t, t, y, s=5.0))


def test_student_without_s_is_refused(teacher):
    student = make_student(teacher, (1.0, 6.0))
    with pytest.raises(ValueError, match="guidance scale"):
        student(torch.randn(1, 1, 8, 8), torch.tensor([1]), torch.tensor([1]))


def test_null_label_is_the_unconditional_model(teacher):
    x_t, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 10, 10])
    with torch.no_grad():
        assert torch.equal(teacher(x_t, t, None), teacher(x_t, t, torch.full((3,), 10)))


def test_scale_shift_gives_each_block_a_scale_as_well_as_a_shift():
    plain, film = tiny_denoiser(), tiny_denoiser(scale_shift=True)
    block = lambda model: model.unet.down_blocks[0].resnets[0]
    assert block(film).time_emb_proj.out_features == 2 * block(plain).time_emb_proj.out_features
    x_t, t, y = torch.randn(2, 1, 8, 8), torch.tensor([500, 500]), torch.tensor([3, 3])
    with torch.no_grad():
        assert film(x_t, t, y).shape == plain(x_t, t, y).shape == x_t.shape
