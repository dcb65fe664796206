"""Width pruning: shapes, configs, reload, importance order, parameter counts, bad inputs."""

from __future__ import annotations

import types

import pytest
import torch
from tiny_pruning import family_model, random_batch

from edgekd.errors import EdgekdError
from edgekd.pruning.importance import activation_importance
from edgekd.pruning.layouts import layout_for
from edgekd.pruning.slicing import parameter_count
from edgekd.pruning.width import PruneSpec, prune_width

FAMILIES = ["bert", "roberta-mlm", "distilbert", "llama", "qwen2-cls", "gpt2"]
# hidden 24 = 3 heads of 8 where head size is hidden/heads; Llama keeps head_dim, any hidden
# GPT-2 keeps no pruned_heads (its KV-cache export reads n_head): hidden = heads * head_dim
TARGETS = {"llama": dict(hidden=20, heads=2, ffn=40), "qwen2-cls": dict(hidden=20, heads=2, ffn=40),
           "gpt2": dict(hidden=16, heads=2, ffn=40)}
DEFAULT_TARGET = dict(hidden=24, heads=2, ffn=40)


def outputs(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def importance_of(model):
    return activation_importance(model, [random_batch(seed=1), random_batch(seed=2)])


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_model_has_target_sizes_and_reloads_identically(family, tmp_path):
    model = family_model(family)
    target = TARGETS.get(family, DEFAULT_TARGET)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_width(model, **target, importance=importance_of(model))

    keys = layout_for(model).config_keys
    assert getattr(pruned.config, keys["hidden"]) == target["hidden"]
    assert getattr(pruned.config, keys["ffn"]) == target["ffn"]
    if "kv" in keys:
        assert pruned.config.num_attention_heads == 2 and pruned.config.num_key_value_heads == 1
        assert pruned.config.head_dim == 8
    elif family == "gpt2":  # every head is real: n_head * head_dim == n_embd, nothing pruned
        assert pruned.config.n_head == 2 and not pruned.config.pruned_heads
    else:  # head slots = hidden / head_dim; the one extra slot is listed in pruned_heads
        assert getattr(pruned.config, keys["heads"]) == 3
        assert pruned.config.pruned_heads == {0: [2], 1: [2]}

    batch = random_batch(seed=3)
    got = outputs(pruned, batch)
    assert got.shape == outputs(model, batch).shape  # labels / vocabulary are not pruned
    assert parameter_count(pruned) < parameter_count(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched

    pruned.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    assert torch.allclose(outputs(reloaded, batch), got, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_pruning_nothing_gives_the_same_outputs(family):
    model = family_model(family)
    batch = random_batch(seed=4)
    expected = outputs(model, batch)
    # two model instances may pick different kernels: equal up to float rounding, not bit-identical
    torch.testing.assert_close(outputs(prune_width(model, importance=importance_of(model)), batch),
                               expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs(PruneSpec().apply(model), batch), expected, atol=1e-6, rtol=0)


def test_bert_keeps_the_top_ranked_heads_neurons_and_channels():
    model = family_model("bert")
    head_dim, dead_heads, dead_neurons, dead_channels = 8, [0, 2], list(range(0, 64, 3)), [1, 5, 30]
    with torch.no_grad():  # make some units produce exactly zero activation
        for layer in model.bert.encoder.layer:
            for h in dead_heads:
                layer.attention.self.value.weight[h * head_dim:(h + 1) * head_dim] = 0
                layer.attention.self.value.bias[h * head_dim:(h + 1) * head_dim] = 0
            layer.intermediate.dense.weight[dead_neurons] = 0
            layer.intermediate.dense.bias[dead_neurons] = 0
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.LayerNorm) and "classifier" not in name:
                module.weight[dead_channels] = 0
                module.bias[dead_channels] = 0
    live_neurons = [n for n in range(64) if n not in dead_neurons]
    live_channels = [c for c in range(32) if c not in dead_channels]
    importance = importance_of(model)
    assert torch.all(importance.heads[0][dead_heads] == 0) and torch.all(importance.heads[0][[1, 3]] > 0)

    pruned = prune_width(model, hidden=24, heads=2, ffn=len(live_neurons), importance=importance)
    hidden_index = torch.topk(importance.hidden, 24).indices.sort().values
    assert set(hidden_index.tolist()) <= set(live_channels)  # 24 of the 29 live channels
    assert torch.equal(pruned.bert.embeddings.word_embeddings.weight,
                       model.bert.embeddings.word_embeddings.weight[:, hidden_index])
    head_rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in (1, 3)])
    for old, new in zip(model.bert.encoder.layer, pruned.bert.encoder.layer):
        expected_query = old.attention.self.query.weight[head_rows][:, hidden_index]
        assert torch.equal(new.attention.self.query.weight, expected_query)
        expected_ffn = old.intermediate.dense.weight[live_neurons][:, hidden_index]
        assert torch.equal(new.intermediate.dense.weight, expected_ffn)


def test_gqa_llama_keeps_whole_kv_groups_by_importance():
    model = family_model("llama")
    head_dim = 8
    with torch.no_grad():  # KV head 0 outputs zeros, so query heads 0 and 1 contribute nothing
        for layer in model.model.layers:
            layer.self_attn.v_proj.weight[:head_dim] = 0
    pruned = prune_width(model, heads=2, importance=importance_of(model))
    for old, new in zip(model.model.layers, pruned.model.layers):
        assert torch.equal(new.self_attn.q_proj.weight, old.self_attn.q_proj.weight[2 * head_dim:])
        assert torch.equal(new.self_attn.k_proj.weight, old.self_attn.k_proj.weight[head_dim:])
        assert torch.equal(new.self_attn.o_proj.weight, old.self_attn.o_proj.weight[:, 2 * head_dim:])
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight  # still tied


def test_gpt2_fused_qkv_keeps_the_same_heads_in_q_k_and_v():
    model = family_model("gpt2")
    head_dim, split = 8, 32
    with torch.no_grad():  # head 1's values are zero
        for block in model.transformer.h:
            block.attn.c_attn.weight[:, 2 * split + head_dim:2 * split + 2 * head_dim] = 0
            block.attn.c_attn.bias[2 * split + head_dim:2 * split + 2 * head_dim] = 0
    importance = importance_of(model)
    pruned = prune_width(model, hidden=24, heads=3, importance=importance)
    rows = torch.topk(importance.hidden, 24).indices.sort().values
    columns = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in (0, 2, 3)])
    columns = torch.cat([columns, columns + split, columns + 2 * split])
    for old, new in zip(model.transformer.h, pruned.transformer.h):
        assert torch.equal(new.attn.c_attn.weight, old.attn.c_attn.weight[rows][:, columns])


def bert_parameters(hidden, heads, ffn, layers=2, vocab=64, positions=64, labels=3, head_dim=8):
    """Parameters of a BERT classifier, written out from the architecture."""
    attention = heads * head_dim
    embeddings = (vocab + positions + 2) * hidden + 2 * hidden
    layer = (3 * (hidden * attention + attention) + attention * hidden + hidden + 2 * hidden
             + hidden * ffn + ffn + ffn * hidden + hidden + 2 * hidden)
    return embeddings + layers * layer + hidden * hidden + hidden + labels * hidden + labels


def llama_parameters(hidden, heads, kv, ffn, layers=2, vocab=64, head_dim=8):
    """Parameters of a tied-embedding Llama causal LM, written out from the architecture."""
    attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2
    return vocab * hidden + layers * (attention + 3 * hidden * ffn + 2 * hidden) + hidden


def test_parameter_counts_drop_as_the_architecture_says():
    bert = family_model("bert")
    assert parameter_count(bert) == bert_parameters(32, 4, 64)
    assert parameter_count(prune_width(bert, hidden=24, heads=2, ffn=40)) == bert_parameters(24, 2, 40)
    llama = family_model("llama")
    assert parameter_count(llama) == llama_parameters(32, 4, 2, 64)
    pruned = prune_width(llama, hidden=20, heads=2, ffn=40)
    assert parameter_count(pruned) == llama_parameters(20, 2, 1, 40)
    assert parameter_count(pruned, embeddings=False) == llama_parameters(20, 2, 1, 40) - 64 * 20


def test_spec_ratios_resolve_to_sizes_the_family_can_hold():
    bert, llama = family_model("bert"), family_model("llama")
    assert PruneSpec(hidden=0.75, heads=0.5, ffn=0.5).sizes(bert) == {"hidden": 24, "heads": 2, "ffn": 32}
    assert PruneSpec(hidden=0.7).sizes(bert)["hidden"] == 24  # a whole number of 8-wide heads
    assert PruneSpec(heads=0.3).sizes(llama)["heads"] == 2  # at least one KV group of 2
    pruned = PruneSpec(hidden=0.75, heads=0.5, ffn=0.5).apply(bert)
    assert (pruned.config.hidden_size, pruned.config.intermediate_size) == (24, 32)


@pytest.mark.parametrize("family", ["bert", "distilbert", "gpt2"])
def test_spec_halving_hidden_alone_drops_the_heads_it_no_longer_holds(family):
    """hidden 32 -> 16 holds two 8-wide heads, so heads go 4 -> 2 although their ratio is 1."""
    model = family_model(family)
    def hidden_and_heads(spec):
        sizes = spec.sizes(model)
        return sizes["hidden"], sizes["heads"]

    assert hidden_and_heads(PruneSpec(hidden=0.5)) == (16, 2)
    assert hidden_and_heads(PruneSpec(hidden=0.5, heads=0.75)) == (16, 2)
    assert hidden_and_heads(PruneSpec(hidden=0.1)) == (8, 1)  # never below one head
    pruned = PruneSpec(hidden=0.5).apply(model)
    keys = layout_for(model).config_keys
    assert (getattr(pruned.config, keys["hidden"]), getattr(pruned.config, keys["heads"])) == (16, 2)
    assert outputs(pruned, random_batch()).shape == outputs(model, random_batch()).shape


@pytest.mark.parametrize("ratios", [{"heads": 0}, {"ffn": 1.5}, {"hidden": -0.2}, {"hidden": "half"}])
def test_spec_rejects_ratios_outside_zero_one(ratios):
    with pytest.raises(EdgekdError, match="must be in"):
        PruneSpec(**ratios)


@pytest.mark.parametrize("family, target, message", [
    ("llama", {"heads": 3}, "KV groups"),
    ("bert", {"ffn": 0}, "leave nothing"),
    ("bert", {"hidden": 0}, "leave nothing"),
    ("bert", {"ffn": 65}, "exceeds"),
    ("bert", {"hidden": 20}, "multiple of the head size"),
    ("bert", {"hidden": 16, "heads": 4}, "hold heads"),
    ("gpt2", {"heads": 2}, "prune hidden with the heads"),
    ("gpt2", {"hidden": 24, "heads": 2}, r"\(hidden=16\)"),
])
def test_bad_widths_are_user_errors(family, target, message):
    with pytest.raises(EdgekdError, match=message):
        prune_width(family_model(family), **target)


def test_importance_of_another_shape_is_a_user_error():
    importance = importance_of(family_model("bert"))
    pruned = prune_width(family_model("bert"), ffn=40)
    with pytest.raises(EdgekdError, match="does not fit"):
        prune_width(pruned, ffn=20, importance=importance)


def test_unsupported_model_type_is_a_user_error():
    with pytest.raises(EdgekdError, match="supports model types"):
        prune_width(types.SimpleNamespace(config=types.SimpleNamespace(model_type="t5")), ffn=8)
