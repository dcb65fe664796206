"""GKD's on-policy steps (lm_on_policy): the student's own samples, scored by the live teacher."""

from __future__ import annotations

import copy
import math
import random
from argparse import Namespace

import pytest
import torch

from edgekd.distillation.lm_on_policy import OnPolicy, prompt_rows, sample_continuations
from edgekd.errors import EdgekdError
from edgekd.recipe import DistillConfig, OnPolicyConfig, load_recipe
from tiny_lm import lm_tokenizer, make_text_data, save_tiny_lm, sentence, write_lm_recipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_lm(tmp_path_factory.mktemp("onpolicy") / "llama", "llama", layers=2)
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def batch_of(tokenizer, texts, length=16):
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_prompt_rows_keeps_only_rows_with_a_whole_prompt():
    ids = torch.arange(12).reshape(3, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    assert prompt_rows(ids, mask, 3).tolist() == [[0, 1, 2], [8, 9, 10]]
    assert prompt_rows(ids, mask, 4).tolist() == [[0, 1, 2, 3]]
    assert prompt_rows(ids, torch.zeros_like(mask), 2) is None
    assert prompt_rows(ids, mask, 5) is None                     # longer than the chunks


def test_samples_are_seeded_and_continue_the_prompt(tiny):
    model, _ = tiny
    prompts = torch.tensor([[5, 6, 7], [8, 9, 10]])
    a = sample_continuations(model, prompts, 6, 1.0, seed="0-3")
    assert a.shape == (2, 9) and torch.equal(a[:, :3], prompts) and not a.requires_grad
    assert torch.equal(a, sample_continuations(model, prompts, 6, 1.0, seed="0-3"))
    others = [sample_continuations(model, prompts, 6, 1.0, seed=f"0-{s}") for s in range(4, 9)]
    assert any(not torch.equal(a, b) for b in others)            # sampled, not greedy
    # a near-zero temperature is greedy decoding (KV-cached steps match a full forward pass)
    greedy = sample_continuations(model, prompts, 6, 1e-4, seed="1")
    with torch.no_grad():
        full = model(input_ids=greedy).logits
    assert torch.equal(full[:, 2:-1].argmax(-1), greedy[:, 3:])


def test_a_teacher_equal_to_the_student_gives_zero_loss_and_the_gradient_reaches_only_the_student(tiny):
    model, tokenizer = tiny
    student = copy.deepcopy(model).train()
    batch = batch_of(tokenizer, [sentence(random.Random(i)) for i in range(4)])
    d = DistillConfig(kd="forward_kl", temperature=2.0)
    same = OnPolicy(copy.deepcopy(model), OnPolicyConfig(fraction=1.0, prompt_tokens=4, new_tokens=5), d)
    assert same.loss(student, batch, step=0).item() == pytest.approx(0.0, abs=1e-6)
    other_teacher = save_tiny_lm_model(seed=7)
    for kind in ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl"):
        on = OnPolicy(other_teacher, OnPolicyConfig(prompt_tokens=4, new_tokens=5), DistillConfig(kd=kind))
        student.zero_grad()
        loss = on.loss(student, batch, step=1)
        assert loss.item() > 0
        loss.backward()
        assert student.model.embed_tokens.weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in other_teacher.parameters())
        assert on.teacher_calls == 1


def save_tiny_lm_model(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(lm_tokenizer()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)).eval()


def test_a_trimmed_student_reaches_the_teacher_through_the_id_map(tiny):
    """The student is the teacher with the rows of unused tokens cut: the teacher, fed the
    sampled ids mapped back to its own and renormalised over the kept tokens, is the same
    distribution, so the divergence is zero; without the map the ids are wrong and it is not."""
    from edgekd.pruning import trim_vocabulary

    model, tokenizer = tiny
    texts = [sentence(random.Random(i)) for i in range(30)]
    trim = trim_vocabulary(model, tokenizer, texts)
    assert trim.model.config.vocab_size < model.config.vocab_size
    batch = batch_of(trim.tokenizer, texts[:4])
    cfg = OnPolicyConfig(fraction=1.0, prompt_tokens=4, new_tokens=6)
    mapped = OnPolicy(model, cfg, DistillConfig(kd="forward_kl"), trim.student_to_teacher)
    assert mapped.loss(trim.model.train(), batch, step=0).item() == pytest.approx(0.0, abs=1e-5)
    unmapped = OnPolicy(model, cfg, DistillConfig(kd="forward_kl"))
    with pytest.raises(EdgekdError, match="do not match"):
        unmapped.loss(trim.model, batch, step=0)


def test_the_step_kind_is_seeded_and_lambda_is_the_share_of_on_policy_steps(tiny):
    model, _ = tiny
    half = OnPolicy(model, OnPolicyConfig(fraction=0.5), DistillConfig(seed=3))
    decisions = [half.wants(step) for step in range(400)]
    assert decisions == [half.wants(step) for step in range(400)]
    assert 0.4 < sum(decisions) / 400 < 0.6
    always = OnPolicy(model, OnPolicyConfig(fraction=1.0), DistillConfig())
    assert all(always.wants(step) for step in range(50))


@pytest.mark.parametrize("bad, message", [({"fraction": 0}, "lambda"), ({"fraction": 1.5}, "lambda"),
                                          ({"new_tokens": 0}, "new_tokens"),
                                          ({"sample_temperature": 0}, "sample_temperature")])
def test_bad_on_policy_settings_are_recipe_errors(tmp_path, bad, message):
    recipe = write_lm_recipe(tmp_path, tmp_path, tmp_path, distill={"on_policy": bad})
    with pytest.raises(EdgekdError, match=message):
        load_recipe(recipe)


def test_a_run_with_on_policy_steps_trains_on_the_students_samples(tmp_path):
    """lambda = 1: every step is on-policy, the teacher runs once per step on the student's
    samples (and never on the cached text during training), and training runs to the end."""
    from edgekd.pipeline import distill_stage, prepare

    data = make_text_data(tmp_path / "data")
    teacher = save_tiny_lm(tmp_path / "llama", "llama", layers=4)
    recipe = write_lm_recipe(tmp_path, data, teacher, distill={
        "epochs": 1, "on_policy": {"fraction": 1.0, "prompt_tokens": 8, "new_tokens": 8}})
    result = distill_stage(prepare(Namespace(recipe=str(recipe), out=str(tmp_path / "run"), overrides=[])))
    s = result.student_metrics
    assert s["on_policy"]["steps"] == s["steps"] == s["on_policy"]["teacher_calls"] > 0
    assert s["on_policy"]["fraction"] == 1.0 and s["on_policy"]["new_tokens"] == 8
    assert math.isfinite(s["first_train_loss"]) and math.isfinite(s["final_train_loss"])
    assert math.isfinite(s["perplexity"])
