"""Where the prunable dimensions live in each supported model family.

A `Layout` names, for every parameter of a model, what each of its axes is:

- `hidden`  the residual stream (embedding width, every norm, every projection's input/output)
- `vocab`   the token vocabulary (embedding rows, LM head rows and bias)
- `heads`   the query-head channels of one layer (`num_heads * head_dim`)
- `kv`      the key/value-head channels of one layer (grouped-query attention)
- `qkv`     GPT-2's fused query|key|value projection (three `heads` blocks side by side)
- `ffn`     the feed-forward neurons of one layer
- `None`    an axis that is never pruned (label count, positions, head_dim-sized norms)

It also names the modules whose activations rank those channels (see `importance.py`). The
slicer and the importance hooks read only this table, so a new family is one more entry here.
Parameter names are matched with `re.search`, so the task head prefix (`bert.`, `model.`,
`transformer.`) does not matter; the first matching rule wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgekd.errors import EdgekdError

L = r"(?P<layer>\d+)"  # the layer index, captured for per-layer roles


@dataclass(frozen=True)
class Layout:
    """How one model family stores its prunable dimensions (see the module docstring)."""

    family: str
    config_keys: dict[str, str]  # role -> config attribute: hidden, ffn, heads, kv (GQA only)
    derived_head_dim: bool  # head_dim = hidden / heads: head counts go through config.pruned_heads
    attention_output: str  # module whose *input* is the concatenated per-head outputs
    ffn_output: str  # module whose *input* is the FFN neurons (the down projection)
    norms: str  # modules whose *output* is the hidden channels (LayerNorm / RMSNorm)
    rules: tuple[tuple[str, tuple[str | None, ...]], ...]
    # False: the config must describe every head without `pruned_heads` (heads * head_dim == hidden)
    allows_pruned_heads: bool = True

    def roles(self, name: str) -> tuple[tuple[str | None, ...], int | None]:
        """The role of each axis of parameter `name`, and its layer index (None outside layers)."""
        for pattern, roles in self.rules:
            match = re.search(pattern, name)
            if match:
                layer = match.groupdict().get("layer")
                return roles, (int(layer) if layer is not None else None)
        raise EdgekdError(f"cannot prune {self.family} parameter {name!r}: no layout rule covers "
                          "it (an unsupported task head?)")

    def head_dim(self, config) -> int:
        """Channels per attention head, which pruning never changes."""
        explicit = getattr(config, "head_dim", None)
        if explicit and not self.derived_head_dim:
            return int(explicit)
        return getattr(config, self.config_keys["hidden"]) // getattr(config, self.config_keys["heads"])


# Task heads shared by the families: a label projection reads the hidden stream.
_LABEL_HEADS = (
    (r"(^|\.)(classifier|score|qa_outputs)\.weight$", (None, "hidden")),
    (r"(^|\.)(classifier|score|qa_outputs)\.bias$", (None,)),
    (r"(^|\.)classifier\.dense\.weight$", ("hidden", "hidden")),  # RoBERTa's two-layer head
    (r"(^|\.)classifier\.dense\.bias$", ("hidden",)),
    (r"(^|\.)classifier\.out_proj\.weight$", (None, "hidden")),
    (r"(^|\.)classifier\.out_proj\.bias$", (None,)),
)

BERT = Layout(
    family="bert",
    config_keys={"hidden": "hidden_size", "ffn": "intermediate_size", "heads": "num_attention_heads"},
    derived_head_dim=True,
    attention_output=rf"layer\.{L}\.attention\.output\.dense$",
    ffn_output=rf"layer\.{L}\.output\.dense$",
    norms=r"(embeddings\.LayerNorm|layer\.\d+\.attention\.output\.LayerNorm|layer\.\d+\.output\.LayerNorm)$",
    rules=(
        (r"embeddings\.word_embeddings\.weight$", ("vocab", "hidden")),
        (r"embeddings\.(position|token_type)_embeddings\.weight$", (None, "hidden")),
        (r"embeddings\.LayerNorm\.(weight|bias)$", ("hidden",)),
        (rf"layer\.{L}\.attention\.self\.(query|key|value)\.weight$", ("heads", "hidden")),
        (rf"layer\.{L}\.attention\.self\.(query|key|value)\.bias$", ("heads",)),
        (rf"layer\.{L}\.attention\.output\.dense\.weight$", ("hidden", "heads")),
        (r"attention\.output\.dense\.bias$", ("hidden",)),
        (r"(attention\.output|layer\.\d+\.output)\.LayerNorm\.(weight|bias)$", ("hidden",)),
        (rf"layer\.{L}\.intermediate\.dense\.weight$", ("ffn", "hidden")),
        (rf"layer\.{L}\.intermediate\.dense\.bias$", ("ffn",)),
        (rf"layer\.{L}\.output\.dense\.weight$", ("hidden", "ffn")),
        (r"layer\.\d+\.output\.dense\.bias$", ("hidden",)),
        (r"pooler\.dense\.weight$", ("hidden", "hidden")),
        (r"pooler\.dense\.bias$", ("hidden",)),
        # masked-LM heads: BERT's cls.predictions.*, RoBERTa's lm_head.*
        (r"(transform\.dense|lm_head\.dense)\.weight$", ("hidden", "hidden")),
        (r"(transform\.dense|lm_head\.dense)\.bias$", ("hidden",)),
        (r"(transform\.LayerNorm|lm_head\.layer_norm)\.(weight|bias)$", ("hidden",)),
        (r"decoder\.weight$", ("vocab", "hidden")),
        (r"(decoder\.bias|predictions\.bias|lm_head\.bias)$", ("vocab",)),
        *_LABEL_HEADS,
    ),
)

DISTILBERT = Layout(
    family="distilbert",
    config_keys={"hidden": "dim", "ffn": "hidden_dim", "heads": "n_heads"},
    derived_head_dim=True,
    attention_output=rf"layer\.{L}\.attention\.out_lin$",
    ffn_output=rf"layer\.{L}\.ffn\.lin2$",
    norms=r"(embeddings\.LayerNorm|sa_layer_norm|output_layer_norm)$",
    rules=(
        (r"embeddings\.word_embeddings\.weight$", ("vocab", "hidden")),
        (r"embeddings\.position_embeddings\.weight$", (None, "hidden")),
        (r"(LayerNorm|sa_layer_norm|output_layer_norm|vocab_layer_norm)\.(weight|bias)$", ("hidden",)),
        (rf"layer\.{L}\.attention\.(q|k|v)_lin\.weight$", ("heads", "hidden")),
        (rf"layer\.{L}\.attention\.(q|k|v)_lin\.bias$", ("heads",)),
        (rf"layer\.{L}\.attention\.out_lin\.weight$", ("hidden", "heads")),
        (r"attention\.out_lin\.bias$", ("hidden",)),
        (rf"layer\.{L}\.ffn\.lin1\.weight$", ("ffn", "hidden")),
        (rf"layer\.{L}\.ffn\.lin1\.bias$", ("ffn",)),
        (rf"layer\.{L}\.ffn\.lin2\.weight$", ("hidden", "ffn")),
        (r"ffn\.lin2\.bias$", ("hidden",)),
        (r"(pre_classifier|vocab_transform)\.weight$", ("hidden", "hidden")),
        (r"(pre_classifier|vocab_transform)\.bias$", ("hidden",)),
        (r"vocab_projector\.weight$", ("vocab", "hidden")),
        (r"vocab_projector\.bias$", ("vocab",)),
        *_LABEL_HEADS,
    ),
)

LLAMA = Layout(
    family="llama",
    config_keys={"hidden": "hidden_size", "ffn": "intermediate_size", "heads": "num_attention_heads",
                 "kv": "num_key_value_heads"},
    derived_head_dim=False,
    attention_output=rf"layers\.{L}\.self_attn\.o_proj$",
    ffn_output=rf"layers\.{L}\.mlp\.down_proj$",
    norms=r"(input_layernorm|post_attention_layernorm|(^|\.)norm)$",
    rules=(
        (r"embed_tokens\.weight$", ("vocab", "hidden")),
        (rf"layers\.{L}\.self_attn\.q_proj\.weight$", ("heads", "hidden")),
        (rf"layers\.{L}\.self_attn\.q_proj\.bias$", ("heads",)),
        (rf"layers\.{L}\.self_attn\.(k|v)_proj\.weight$", ("kv", "hidden")),
        (rf"layers\.{L}\.self_attn\.(k|v)_proj\.bias$", ("kv",)),
        (rf"layers\.{L}\.self_attn\.o_proj\.weight$", ("hidden", "heads")),
        (r"self_attn\.o_proj\.bias$", ("hidden",)),
        (r"self_attn\.(q|k)_norm\.weight$", (None,)),  # per-head_dim norms (Qwen3-style)
        (rf"layers\.{L}\.mlp\.(gate|up)_proj\.weight$", ("ffn", "hidden")),
        (rf"layers\.{L}\.mlp\.(gate|up)_proj\.bias$", ("ffn",)),
        (rf"layers\.{L}\.mlp\.down_proj\.weight$", ("hidden", "ffn")),
        (r"mlp\.down_proj\.bias$", ("hidden",)),
        (r"(input_layernorm|post_attention_layernorm|(^|\.)norm)\.weight$", ("hidden",)),
        (r"(^|\.)lm_head\.weight$", ("vocab", "hidden")),
        *_LABEL_HEADS,
    ),
)

GPT2 = Layout(
    family="gpt2",
    config_keys={"hidden": "n_embd", "ffn": "n_inner", "heads": "n_head"},
    derived_head_dim=True,
    attention_output=rf"h\.{L}\.attn\.c_proj$",
    ffn_output=rf"h\.{L}\.mlp\.c_proj$",
    norms=r"(ln_1|ln_2|ln_f)$",
    rules=(  # Conv1D stores weights as [in, out]: the transpose of nn.Linear
        (r"wte\.weight$", ("vocab", "hidden")),
        (r"wpe\.weight$", (None, "hidden")),
        (r"(ln_1|ln_2|ln_f)\.(weight|bias)$", ("hidden",)),
        (rf"h\.{L}\.attn\.c_attn\.weight$", ("hidden", "qkv")),
        (rf"h\.{L}\.attn\.c_attn\.bias$", ("qkv",)),
        (rf"h\.{L}\.attn\.c_proj\.weight$", ("heads", "hidden")),
        (r"attn\.c_proj\.bias$", ("hidden",)),
        (rf"h\.{L}\.mlp\.c_fc\.weight$", ("hidden", "ffn")),
        (rf"h\.{L}\.mlp\.c_fc\.bias$", ("ffn",)),
        (rf"h\.{L}\.mlp\.c_proj\.weight$", ("ffn", "hidden")),
        (r"mlp\.c_proj\.bias$", ("hidden",)),
        (r"(^|\.)lm_head\.weight$", ("vocab", "hidden")),
        *_LABEL_HEADS,
    ),
    # optimum's KV-cache export sizes the cache from config.n_head and ignores pruned_heads
    allows_pruned_heads=False,
)

LAYOUTS = {"bert": BERT, "roberta": BERT, "xlm-roberta": BERT, "distilbert": DISTILBERT,
           "llama": LLAMA, "qwen2": LLAMA, "mistral": LLAMA, "gpt2": GPT2}


def layout_for(model) -> Layout:
    """The layout of `model`'s family, or an `EdgekdError` naming the supported model types."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in LAYOUTS:
        raise EdgekdError(f"pruning supports model types {', '.join(sorted(LAYOUTS))}; "
                          f"got {model_type!r}")
    return LAYOUTS[model_type]
