"""Student construction: DistilBERT-style copies are exact; bad layer indices are refused."""

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.models import build_student, check_student_config, count_parameters
from edgekd.tasks.text_classification import load_model as load_classifier
from edgekd.recipe import FromTeacherConfig, StudentConfig


def test_copied_layers_equal_the_teachers_exactly(tiny_model_dir):
    teacher = load_classifier(str(tiny_model_dir), ["a", "b", "c"])
    student = build_student(StudentConfig(from_teacher=FromTeacherConfig(layers=[1])), teacher,
                            ["a", "b", "c"])
    assert student.config.num_hidden_layers == 1
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key.replace("encoder.layer.0.", "encoder.layer.1.")
        assert torch.equal(value, t_state[source]), key
    assert count_parameters(student) < count_parameters(teacher)


def test_student_from_config_overrides(tiny_model_dir):
    teacher = load_classifier(str(tiny_model_dir), ["a", "b", "c"])
    student = build_student(StudentConfig(config={"num_hidden_layers": 1, "hidden_size": 32,
                                                  "num_attention_heads": 2, "intermediate_size": 64}),
                            teacher, ["a", "b", "c"])
    assert student.config.hidden_size == 32 and student.config.num_hidden_layers == 1


def test_layer_index_out_of_range_is_refused(tiny_model_dir):
    teacher = load_classifier(str(tiny_model_dir), ["a", "b"])
    with pytest.raises(EdgekdError, match="layer 5 is out of range"):
        check_student_config(StudentConfig(from_teacher=FromTeacherConfig(layers=[0, 5])), teacher.config)
    with pytest.raises(EdgekdError, match="student.config.not_a_field"):
        check_student_config(StudentConfig(config={"not_a_field": 1}), teacher.config)
