"""Choosing a causal-LM student's layers by Block Influence (ShortGPT) on tiny random Llamas:
the values match the formula, the kept layers are the highest-BI ones (plus the first and last),
the stage records them, and an impossible `keep` is a one-line error."""

from argparse import Namespace

import numpy as np
import pytest
import torch

from edgekd.distillation.lm_layers import (block_influence, choose_layers, highest_influence,
                                           spread_layers)
from edgekd.errors import EdgekdError
from edgekd.recipe import FromTeacherConfig, StudentConfig
from tiny_lm import make_text_data, save_tiny_lm, write_lm_recipe


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("bi") / "llama", "llama", layers=6, seed=3)


def _model_and_tokenizer(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def _reference_influence(model, sequences):
    """BI from the model's own hidden states: hidden_states[i] enters layer i; the last layer's
    output is read before the final norm (HF's hidden_states[-1] is after it)."""
    before_norm = []
    handle = model.model.norm.register_forward_pre_hook(lambda m, args: before_norm.append(args[0]))
    sums, count = np.zeros(model.config.num_hidden_layers), 0
    try:
        with torch.no_grad():
            for ids in sequences:
                hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
                states = list(hidden[:-1]) + [before_norm.pop()]
                for i in range(len(states) - 1):
                    a, b = states[i][0], states[i + 1][0]
                    sums[i] += float((torch.sum(a * b, -1) / (a.norm(dim=-1) * b.norm(dim=-1))).sum())
                count += len(ids)
    finally:
        handle.remove()
    return 1 - sums / count


def test_block_influence_is_one_minus_the_mean_cosine_of_each_layers_input_and_output(teacher_dir):
    model, tokenizer = _model_and_tokenizer(teacher_dir)
    sequences = tokenizer(["the cat sat on a mat.", "dogs ran far away from big red cars and"])["input_ids"]
    influence = block_influence(model, sequences)
    assert len(influence) == 6
    np.testing.assert_allclose(influence, _reference_influence(model, sequences), rtol=1e-4, atol=1e-6)
    assert len(set(np.round(influence, 8))) == 6          # random layers: all different


def test_the_kept_layers_are_the_first_the_last_and_the_highest_influence():
    influence = [0.01, 0.5, 0.05, 0.3, 0.3, 0.02]
    assert highest_influence(influence, 2) == [0, 5]          # first and last, whatever their BI
    assert highest_influence(influence, 3) == [0, 1, 5]
    assert highest_influence(influence, 4) == [0, 1, 3, 5]     # a tie goes to the lower layer
    assert highest_influence(influence, 6) == [0, 1, 2, 3, 4, 5]
    assert spread_layers(6, 30) == [0, 6, 12, 17, 23, 29]
    assert spread_layers(2, 30) == [0, 29]


def test_choose_layers_on_a_teacher_keeps_its_highest_influence_layers(teacher_dir):
    model, tokenizer = _model_and_tokenizer(teacher_dir)
    texts = ["the cat sat on a mat while dogs ran.", "small birds sang songs about rivers.",
             "big red cars and old towns."]
    chosen = choose_layers(FromTeacherConfig(keep=4, calibration_chunks=2), model, tokenizer, texts, 32)
    sequences = tokenizer(texts[:2])["input_ids"]
    reference = _reference_influence(model, sequences)
    middle = sorted(range(1, 5), key=lambda i: -reference[i])[:2]
    assert chosen["layers"] == sorted([0, 5, *middle])
    assert chosen["calibration_chunks"] == 2
    assert chosen["calibration_tokens"] == sum(len(s) for s in sequences)
    np.testing.assert_allclose(chosen["block_influence"], reference, atol=1e-5)


@pytest.mark.parametrize("keep", [1, 7])
def test_an_impossible_keep_is_a_one_line_error(teacher_dir, keep):
    from edgekd.models import check_student_config, load_config

    with pytest.raises(EdgekdError, match=f"keep={keep} is impossible") as error:
        check_student_config(StudentConfig(from_teacher=FromTeacherConfig(keep=keep)),
                             load_config(str(teacher_dir)))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("section, message", [
    ({"layers": [0, 1], "keep": 2}, "not both"),
    ({"keep": 0}, "keep and calibration_chunks must be >= 1"),
    ({"keep": 3, "select": "random"}, "select must be one of"),
    ({"layers": [0, 1], "select": "spread"}, "explicit layers need none"),
    ({}, "needs layers .a list. or keep"),
])
def test_bad_from_teacher_sections_are_recipe_errors(tmp_path, section, message):
    from edgekd.recipe import load_recipe

    recipe = write_lm_recipe(tmp_path, tmp_path, tmp_path, student={"from_teacher": section})
    with pytest.raises(EdgekdError, match=message):
        load_recipe(recipe)


def test_keep_is_for_causal_lm_students_only(teacher_dir):
    from edgekd.models import build_student

    model, _ = _model_and_tokenizer(teacher_dir)
    with pytest.raises(EdgekdError, match="causal-LM students only"):
        build_student(StudentConfig(from_teacher=FromTeacherConfig(keep=3)), model, [])


def test_the_stage_builds_the_student_from_the_chosen_layers_and_records_them(tmp_path, teacher_dir,
                                                                               monkeypatch):
    import edgekd.distillation.lm_layers as lm_layers
    import edgekd.models as models
    from edgekd.files import read_json
    from edgekd.pipeline import distill_stage, prepare

    data = make_text_data(tmp_path / "data")
    recipe = write_lm_recipe(tmp_path, data, teacher_dir, student={"from_teacher": {"keep": 3},
                             "vocabulary": {"trim": True}}, distill={"epochs": 1})
    seen = {}

    def spy_choose(cfg, teacher, tokenizer, texts, max_length):
        seen["texts"] = list(texts[:cfg.calibration_chunks])
        return choose_layers(cfg, teacher, tokenizer, texts, max_length)

    def spy_copy(teacher, student, layers):
        seen["copied"] = list(layers)
        return copy_weights(teacher, student, layers)

    copy_weights = models.copy_teacher_weights
    monkeypatch.setattr(lm_layers, "choose_layers", spy_choose)
    monkeypatch.setattr(models, "copy_teacher_weights", spy_copy)
    result = distill_stage(prepare(Namespace(recipe=str(recipe), out=str(tmp_path / "run"), overrides=[])))
    selection = result.student_metrics["layer_selection"]
    model, tokenizer = _model_and_tokenizer(teacher_dir)
    reference = _reference_influence(model, tokenizer(seen["texts"], truncation=True,
                                                      max_length=32)["input_ids"])
    np.testing.assert_allclose(selection["block_influence"], reference, atol=1e-5)
    assert selection["layers"] == highest_influence(list(reference), 3) == seen["copied"]
    assert selection["select"] == "block_influence" and selection["keep"] == 3
    assert result.student_metrics["num_hidden_layers"] == 3
    assert read_json(tmp_path / "run" / "student" / "config.json")["num_hidden_layers"] == 3
