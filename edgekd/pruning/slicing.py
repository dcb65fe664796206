"""Slice a model's weights along named dimensions and rebuild it from a rewritten config.

Both width pruning and vocabulary trimming end here: they decide which indices to keep for each
role of `layouts.Layout` and write the new config; this module cuts every parameter along those
roles and builds a fresh model of the same class from the new config, then loads the cut
weights with `strict=True`. Building from the config (rather than editing modules in place)
means the pruned model in memory is exactly what `from_pretrained` will rebuild from the saved
folder, and the strict load checks that the config and the weights agree.
"""

from __future__ import annotations

import copy

Keep = dict  # role ("hidden", "vocab") or (role, layer) -> sorted LongTensor of kept indices


def head_channels(head_index, head_dim: int):
    """The channel indices of whole heads: head h covers channels h*head_dim .. h*head_dim+d-1."""
    import torch

    offsets = torch.arange(head_dim)
    return (head_index[:, None] * head_dim + offsets[None, :]).reshape(-1)


def axis_sizes(state_dict, layout) -> dict:
    """The current size of every role (and per-layer role) in `state_dict`."""
    sizes: dict = {}
    for name, tensor in state_dict.items():
        roles, layer = layout.roles(name)
        for axis, role in enumerate(roles):
            if role is None:
                continue
            key = role if layer is None or role in ("hidden", "vocab") else (role, layer)
            sizes.setdefault(key, tensor.shape[axis])
    return sizes


def slice_state_dict(state_dict, layout, keep: Keep) -> dict:
    """Every tensor of `state_dict` cut to the kept indices of each of its axes' roles."""
    sliced = {}
    for name, tensor in state_dict.items():
        roles, layer = layout.roles(name)
        for axis, role in enumerate(roles):
            index = keep.get(role) if role in ("hidden", "vocab") else keep.get((role, layer))
            if index is not None:
                tensor = tensor.index_select(axis, index.to(tensor.device))
        sliced[name] = tensor
    return sliced


def rebuild(model, config, state_dict):
    """A new model of `model`'s class built from `config`, holding `state_dict` (strict load).

    Weight initialisation is skipped (every weight is overwritten by the load); the new model
    keeps the original's dtype, device, train/eval mode and generation config.
    """
    import torch
    from transformers.modeling_utils import no_init_weights

    parameter = next(model.parameters())
    with no_init_weights():
        fresh = type(model)(config)
    fresh.to(device=parameter.device, dtype=parameter.dtype)
    try:
        fresh.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # a layout/config mismatch is a bug here, not a user mistake
        raise RuntimeError(f"sliced weights do not fit the rewritten {config.model_type} config: "
                           f"{exc}") from exc
    fresh.tie_weights()
    fresh.train(model.training)
    if getattr(model, "generation_config", None) is not None and fresh.can_generate():
        fresh.generation_config = copy.deepcopy(model.generation_config)
    with torch.no_grad():  # keep the original's requires_grad flags (e.g. a frozen embedding)
        flags = {name: p.requires_grad for name, p in model.named_parameters()}
        for name, p in fresh.named_parameters():
            p.requires_grad_(flags.get(name, True))
    return fresh


def parameter_count(model, *, embeddings: bool = True) -> int:
    """Number of parameters of `model`, tied weights counted once.

    With `embeddings=False` the input embedding matrices (token, position, token-type) are left
    out, which is the count that width pruning changes most directly.
    """
    import torch

    total = sum(p.numel() for p in model.parameters())
    if not embeddings:
        seen = set()
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding) and id(module.weight) not in seen:
                seen.add(id(module.weight))
                total -= module.weight.numel()
    return total
