"""Structured width pruning: keep the top-ranked hidden channels, attention heads and FFN neurons.

`prune_width(model, hidden=256, heads=8, ffn=1024, importance=imp)` returns a new, genuinely
smaller model of the same class whose config says what its weights are, so `save_pretrained`
and `from_pretrained` round-trip it. Depth is unchanged (every layer keeps the same counts, as
in Minitron's width pruning). What is kept, per dimension:

- hidden: the same channels everywhere the residual stream appears (embeddings, every norm,
  every projection's input/output, pooler and task heads, the tied LM head).
- heads: whole heads; `head_dim` never changes. With grouped-query attention (Llama, Qwen2)
  whole KV groups are kept: a KV head together with the query heads that read it.
- ffn: whole neurons (the rows of the up/gate projections and columns of the down projection).

Families whose head size is `hidden / heads` (BERT, RoBERTa, DistilBERT) record the dropped
heads in `config.pruned_heads`, which transformers replays when it builds the model, so the head
count can be smaller than `hidden / head_dim`. GPT-2 cannot (optimum's KV-cache export sizes the
cache from `n_head`): there `hidden` must be exactly `heads * head_dim`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from edgekd.errors import EdgekdError
from edgekd.pruning.layouts import layout_for
from edgekd.pruning.slicing import axis_sizes, head_channels, rebuild, slice_state_dict


@dataclass(frozen=True)
class PruneSpec:
    """Width pruning as ratios of the current sizes, each in (0, 1] (1 keeps everything).

    `PruneSpec(hidden=2/3, heads=2/3, ffn=2/3).apply(model, importance)` prunes a MiniLM-shaped
    BERT (384 / 12 heads / 1536) to 256 / 8 heads / 1024.
    """

    hidden: float = 1.0
    heads: float = 1.0
    ffn: float = 1.0

    def __post_init__(self):
        for name in ("hidden", "heads", "ffn"):
            ratio = getattr(self, name)
            if not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
                raise EdgekdError(f"pruning ratio {name}={ratio!r} must be in (0, 1]")

    def sizes(self, model) -> dict[str, int]:
        """The absolute sizes these ratios give for `model`, rounded to what it can hold:
        hidden to a whole number of heads where head size is hidden/heads (and heads down to
        what that hidden holds), heads to whole KV groups under grouped-query attention."""
        layout = layout_for(model)
        config = model.config
        shape = _current_shape(model, layout)
        head_dim = layout.head_dim(config)
        hidden = max(round(self.hidden * shape.hidden), 1)
        if layout.derived_head_dim:
            hidden = max(round(self.hidden * shape.hidden / head_dim), 1) * head_dim
        heads = round(self.heads * shape.heads)
        if shape.group > 1:
            heads = round(self.heads * shape.heads / shape.group) * shape.group
        heads = max(heads, shape.group)
        if layout.derived_head_dim:  # the pruned hidden must still hold the kept heads
            heads = min(heads, hidden // head_dim)
        return {"hidden": hidden, "heads": heads, "ffn": max(round(self.ffn * shape.ffn), 1)}

    def apply(self, model, importance=None):
        """`prune_width(model, **self.sizes(model), importance=importance)`."""
        return prune_width(model, **self.sizes(model), importance=importance)


@dataclass(frozen=True)
class _Shape:
    hidden: int
    heads: int  # query heads per layer
    group: int  # query heads per KV head (1 without grouped-query attention)
    ffn: int
    layers: int


def _current_shape(model, layout) -> _Shape:
    """Sizes read from the weights (not the config, which a pruned_heads model understates)."""
    sizes = axis_sizes(model.state_dict(), layout)
    head_dim = layout.head_dim(model.config)
    layers = sorted({key[1] for key in sizes if isinstance(key, tuple)})
    heads = {sizes[("heads", i)] // head_dim for i in layers}
    ffn = {sizes[("ffn", i)] for i in layers}
    if len(heads) > 1 or len(ffn) > 1:
        raise EdgekdError("pruning needs the same head count and FFN width in every layer; "
                          f"this model has heads {sorted(heads)}, FFN widths {sorted(ffn)}")
    group = 1
    if "kv" in layout.config_keys:
        query, kv = heads.pop(), sizes[("kv", layers[0])] // head_dim
        if query % kv:
            raise EdgekdError(f"{query} query heads do not divide into {kv} KV groups")
        heads, group = {query}, query // kv
    return _Shape(hidden=sizes["hidden"], heads=heads.pop(), group=group, ffn=ffn.pop(),
                  layers=len(layers))


def _top(scores, keep: int):
    """The indices of the `keep` highest `scores` (the first `keep` without scores), sorted so
    kept channels stay in their original order."""
    import torch

    if scores is None:
        return torch.arange(keep)
    return torch.topk(scores.float(), keep).indices.sort().values


def _check_importance(scores, shape: _Shape) -> None:
    """Importance must come from a model of this shape (the same one, before pruning)."""
    found = (len(scores.hidden), len(scores.heads), len(scores.ffn))
    if found != (shape.hidden, shape.layers, shape.layers) or any(
            len(h) != shape.heads for h in scores.heads) or any(len(f) != shape.ffn for f in scores.ffn):
        raise EdgekdError(f"importance does not fit this model (hidden {shape.hidden}, "
                          f"{shape.layers} layers of {shape.heads} heads and {shape.ffn} neurons); "
                          "compute it on the model being pruned")


def _check_target(name: str, target: int | None, current: int) -> int:
    if target is None:
        return current
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or target < 1:
        raise EdgekdError(f"pruning {name}={target!r} would leave nothing; give a positive size")
    if target > current:
        raise EdgekdError(f"pruning {name}={target} exceeds the current {name} size {current}")
    return int(target)


def prune_width(model, *, hidden: int | None = None, heads: int | None = None,
                ffn: int | None = None, importance=None):
    """A copy of `model` keeping `hidden` channels, `heads` query heads per layer and `ffn`
    neurons per layer (None keeps a dimension whole), chosen by `importance`.

    `importance` is an `importance.Importance` (activation ranking on calibration data); without
    it the leading channels are kept, which only makes sense for tests or already-sorted models.
    The input model is left untouched. Raises `EdgekdError` for sizes that leave nothing, exceed
    the model, split a KV group, or cannot be expressed by the family's config.
    """
    import torch

    layout = layout_for(model)
    shape = _current_shape(model, layout)
    head_dim = layout.head_dim(model.config)
    hidden = _check_target("hidden", hidden, shape.hidden)
    heads = _check_target("heads", heads, shape.heads)
    ffn = _check_target("ffn", ffn, shape.ffn)
    if heads % shape.group:
        raise EdgekdError(f"heads={heads} is not a whole number of KV groups: this model has "
                          f"{shape.group} query heads per KV head")
    if layout.derived_head_dim and (hidden % head_dim or heads * head_dim > hidden):
        raise EdgekdError(f"{layout.family} derives head size from hidden/heads: hidden={hidden} "
                          f"must be a multiple of the head size {head_dim} and hold heads={heads}")
    if not layout.allows_pruned_heads and heads * head_dim != hidden:
        raise EdgekdError(f"{layout.family} needs hidden = heads x head size {head_dim}, got "
                          f"hidden={hidden}, heads={heads}: prune hidden with the heads "
                          f"(hidden={heads * head_dim}), since its KV-cache export reads n_head")

    scores = importance
    if scores is not None:
        _check_importance(scores, shape)
    keep = {"hidden": _top(scores.hidden if scores is not None else None, hidden)}
    for layer in range(shape.layers):
        groups = shape.heads // shape.group
        head_scores = scores.heads[layer] if scores is not None else None
        if head_scores is not None:  # a KV group is worth the sum of its query heads
            head_scores = head_scores.float().reshape(groups, shape.group).sum(1)
        kept_groups = _top(head_scores, heads // shape.group)
        kept_heads = head_channels(kept_groups, shape.group)  # query heads of the kept groups
        channels = head_channels(kept_heads, head_dim)
        keep[("heads", layer)] = channels
        keep[("kv", layer)] = head_channels(kept_groups, head_dim)
        split = shape.heads * head_dim  # GPT-2's c_attn holds q | k | v, each `split` wide
        keep[("qkv", layer)] = torch.cat([channels, channels + split, channels + 2 * split])
        keep[("ffn", layer)] = _top(scores.ffn[layer] if scores is not None else None, ffn)

    config = _rewrite_config(model.config, layout, hidden, heads, ffn, shape, head_dim)
    return rebuild(model, config, slice_state_dict(model.state_dict(), layout, keep))


def _rewrite_config(config, layout, hidden, heads, ffn, shape, head_dim):
    """A copy of `config` describing the pruned sizes."""
    import copy

    new = copy.deepcopy(config)
    keys = layout.config_keys
    setattr(new, keys["hidden"], hidden)
    setattr(new, keys["ffn"], ffn)  # explicit even where None meant 4*hidden (GPT-2's n_inner)
    if layout.derived_head_dim:
        # The model is built with hidden/head_dim heads, then transformers drops the trailing
        # ones listed in pruned_heads; the kept heads were packed at the front by the slicer.
        slots = hidden // head_dim
        setattr(new, keys["heads"], slots)
        new.pruned_heads = ({layer: list(range(heads, slots)) for layer in range(shape.layers)}
                            if heads < slots else {})
    else:
        setattr(new, keys["heads"], heads)
        setattr(new, keys["kv"], heads // shape.group)
        new.head_dim = head_dim
    return new
