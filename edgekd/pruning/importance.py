"""Activation importance on calibration data, for ranking what width pruning keeps.

Minitron (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
Distillation", section 2.2) ranks each prunable unit by the activations it produces on a small
calibration set, using only forward passes:

    head i      F_head(i)   = agg_{B,S} || Attn(X W_Q,i, X W_K,i, X W_V,i) ||_2
    neuron i    F_neuron(i) = agg_{B,S} | X W_1,i^T |
    channel i   F_emb(i)    = agg_{B,S} | LN(X)_i |      (summed over every LayerNorm/RMSNorm)

Here `agg` is the mean over every non-padding token of every calibration batch, so scores from
batches of different lengths are comparable. Two choices made for these models:

- A neuron is scored at the input of the down projection (`act(X W_1^T)`, or
  `act(X W_gate^T) * X W_up^T` in gated MLPs): that is the value the pruned rows multiply.
- A head is scored on its slice of the attention output projection's input: the per-head
  context vector the formula above takes the norm of.

Activations are collected with forward hooks (pre-hooks on the output projections, hooks on the
norms) registered for the duration of the calibration passes; the model is not modified.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from edgekd.errors import EdgekdError
from edgekd.pruning.layouts import layout_for


@dataclass
class Importance:
    """Scores for width pruning (higher = keep): `hidden` [hidden], and per layer `heads`
    [query heads] and `ffn` [neurons]."""

    hidden: "torch.Tensor"  # noqa: F821
    heads: list
    ffn: list


class _Mean:
    """Running mean over tokens of a per-channel score, padding tokens left out."""

    def __init__(self):
        self.total = None
        self.tokens = 0

    def add(self, values, mask):
        """`values` [batch, seq, channels]; `mask` [batch, seq] of 0/1 or None (all tokens)."""
        import torch

        values = values.detach().float()
        if mask is None:
            summed, count = values.sum((0, 1)), values.shape[0] * values.shape[1]
        else:  # a masked sum as one contraction, without a masked copy of the activations
            summed = torch.einsum("bsc,bs->c", values, mask.to(values.dtype))
            count = int(mask.sum())
        self.total = summed if self.total is None else self.total + summed
        self.tokens += count

    def value(self):
        return self.total / max(self.tokens, 1)


def _modules(model, pattern: str) -> list[tuple[int | None, object]]:
    """(layer index or None, module) for every module whose dotted name matches `pattern`."""
    found = []
    for name, module in model.named_modules():
        match = re.search(pattern, name)
        if match:
            layer = match.groupdict().get("layer")
            found.append((int(layer) if layer is not None else None, module))
    return found


def activation_importance(model, batches) -> Importance:
    """Minitron activation importance of `model`'s heads, FFN neurons and hidden channels.

    `batches` yields dicts of model inputs (tensors, batch first), e.g. from
    `calibration_batches`; an `attention_mask` in a batch keeps padding out of the means.
    """
    import torch

    layout = layout_for(model)
    head_dim = layout.head_dim(model.config)
    state = {"mask": None}
    heads: dict[int, _Mean] = {}
    ffn: dict[int, _Mean] = {}
    norms: list[_Mean] = []

    def head_hook(mean):
        def hook(module, inputs):
            x = inputs[0]
            per_head = x.reshape(*x.shape[:2], -1, head_dim).float().norm(dim=-1)
            mean.add(per_head, state["mask"])
        return hook

    def ffn_hook(mean):
        return lambda module, inputs: mean.add(inputs[0].abs(), state["mask"])

    def norm_hook(mean):
        return lambda module, inputs, output: mean.add(output.abs(), state["mask"])

    handles = []
    was_training = model.training
    try:
        for layer, module in _modules(model, layout.attention_output):
            heads[layer] = _Mean()
            handles.append(module.register_forward_pre_hook(head_hook(heads[layer])))
        for layer, module in _modules(model, layout.ffn_output):
            ffn[layer] = _Mean()
            handles.append(module.register_forward_pre_hook(ffn_hook(ffn[layer])))
        for _, module in _modules(model, layout.norms):
            norms.append(_Mean())
            handles.append(module.register_forward_hook(norm_hook(norms[-1])))
        model.eval()
        accepted = inspect.signature(model.forward).parameters
        device = next(model.parameters()).device
        with torch.no_grad():
            for batch in batches:
                # tokenizers may add inputs a model does not take (token_type_ids for Llama)
                inputs = {key: value.to(device) for key, value in batch.items() if key in accepted}
                state["mask"] = inputs.get("attention_mask")
                model(**inputs)
    finally:  # a failing batch must not leave the caller's model in eval mode or hooked
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if not norms or not norms[0].tokens:
        raise EdgekdError("importance needs at least one calibration batch with tokens")
    return Importance(hidden=sum(mean.value() for mean in norms),
                      heads=[heads[i].value() for i in sorted(heads)],
                      ffn=[ffn[i].value() for i in sorted(ffn)])


def calibration_batches(tokenizer, texts, *, batch_size: int = 8, max_length: int = 128):
    """Model inputs for `texts`, `batch_size` at a time, right-padded with an attention mask
    (pad id 0 when the tokenizer has none, as GPT-2's; the mask hides it)."""
    import torch

    texts = list(texts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length)
        longest = max(len(ids) for ids in encoded["input_ids"])
        batch = {}
        for key, values in encoded.items():
            pad = pad_id if key == "input_ids" else 0
            batch[key] = torch.tensor([list(v) + [pad] * (longest - len(v)) for v in values])
        batch.setdefault("attention_mask", (batch["input_ids"] != pad_id).long())
        yield batch
