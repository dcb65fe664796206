"""Activation importance: shapes, padding left out, hooks removed, tokenizer batches."""

from __future__ import annotations

import pytest
import torch
from tiny_pruning import family_model, random_batch, sentences

from edgekd.pruning.importance import activation_importance, calibration_batches


def test_scores_have_one_entry_per_head_neuron_and_channel():
    model = family_model("llama")
    importance = activation_importance(model, [random_batch()])
    assert importance.hidden.shape == (32,)
    assert [s.shape for s in importance.heads] == [(4,), (4,)]  # query heads, not KV heads
    assert [s.shape for s in importance.ffn] == [(64,), (64,)]
    assert all(torch.all(s >= 0) for s in [importance.hidden, *importance.heads, *importance.ffn])


def test_padding_tokens_do_not_count():
    """Two texts padded into one batch score the same as the two texts run alone."""
    model = family_model("bert")
    ids = torch.randint(1, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    together = activation_importance(model, [{"input_ids": ids, "attention_mask": mask}])
    alone = activation_importance(model, [{"input_ids": ids[:1]}, {"input_ids": ids[1:, :5]}])
    for a, b in zip([together.hidden, *together.heads, *together.ffn],
                    [alone.hidden, *alone.heads, *alone.ffn]):
        assert torch.allclose(a, b, atol=1e-5)


def test_model_is_left_as_it_was():
    model = family_model("gpt2").train()
    activation_importance(model, [random_batch()])
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_tokenizer_batches_feed_a_model_without_pad_token(byte_bpe):
    """The byte-level tokenizer has no pad token and returns token_type_ids Llama does not take."""
    texts = sentences(10, seed=5)
    batches = list(calibration_batches(byte_bpe, texts, batch_size=4, max_length=16))
    assert [len(b["input_ids"]) for b in batches] == [4, 4, 2]
    assert all(b["input_ids"].shape == b["attention_mask"].shape for b in batches)
    assert int(batches[0]["attention_mask"].sum()) == sum(
        min(len(byte_bpe(t)["input_ids"]), 16) for t in texts[:4])
    model = family_model("llama", vocab_size=len(byte_bpe))
    importance = activation_importance(model, batches)
    assert importance.hidden.shape == (32,)


def test_importing_the_package_stays_light():
    """The CLI may import edgekd.pruning; torch and transformers load only when a function runs."""
    import subprocess
    import sys

    code = ("import sys, edgekd.pruning; "
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_failing_batch_still_restores_training_mode_and_hooks():
    model = family_model("gpt2").train()
    bad = {"input_ids": torch.tensor([[1, 64]])}  # id 64 is outside the 64-token embedding
    with pytest.raises(IndexError):
        activation_importance(model, [random_batch(), bad])
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
