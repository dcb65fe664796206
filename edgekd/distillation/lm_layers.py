"""Choosing which of a causal-LM teacher's layers a student keeps (`student.from_teacher.keep`).

`block_influence` (ShortGPT: Men et al. 2024, "ShortGPT: Layers in Large Language Models are
More Redundant Than You Expect", sec. 3): layer i's Block Influence is

    BI_i = 1 - E_{x,t} [ h_{i,t} . h_{i+1,t} / (||h_{i,t}|| ||h_{i+1,t}||) ]

where h_i is the hidden state entering layer i and h_{i+1} the one leaving it, averaged over
every token t of calibration texts x. A layer that barely turns the hidden state (BI near 0) is
the least missed; the student keeps the `keep` layers of highest BI. The first and the last
layer are always kept: the first turns token embeddings into the stream the others read and the
last writes what the LM head reads, so a small calibration set must never drop them (ShortGPT
finds both among the highest-BI layers anyway). Ties go to the lower layer.

`spread`: `keep` layers evenly spaced from the first to the last (the classic DistilBERT-style
choice, for comparison).
"""

from __future__ import annotations

from edgekd.errors import EdgekdError


def check_keep(keep: int, teacher_layers: int) -> None:
    """Refuse a `keep` that the teacher cannot give (first and last are always kept)."""
    least = min(2, teacher_layers)
    if not least <= keep <= teacher_layers:
        raise EdgekdError(f"student.from_teacher.keep={keep} is impossible: the teacher has "
                          f"{teacher_layers} layers and the first and last are always kept "
                          f"(keep must be {least}..{teacher_layers})")


def spread_layers(keep: int, teacher_layers: int) -> list[int]:
    """`keep` layer indices evenly spaced over 0..teacher_layers-1, first and last included."""
    check_keep(keep, teacher_layers)
    if keep == 1:
        return [0]
    return sorted({round(i * (teacher_layers - 1) / (keep - 1)) for i in range(keep)})


def highest_influence(influence: list[float], keep: int) -> list[int]:
    """The `keep` layer indices to keep by Block Influence: the first and the last, then the
    highest BI (ties: the lower index), in ascending order."""
    n = len(influence)
    check_keep(keep, n)
    chosen = {0, n - 1}
    ranked = sorted(range(n), key=lambda i: (-influence[i], i))
    for i in ranked:
        if len(chosen) >= keep:
            break
        chosen.add(i)
    return sorted(chosen)


def block_influence(model, sequences: list[list[int]]) -> list[float]:
    """BI of each decoder layer of `model` (see module doc) over every token of `sequences`
    (token id lists, run one at a time so no padding enters the mean). The hidden states are
    caught at each layer's input and output with hooks, so a final norm never counts."""
    import torch

    from edgekd.models import encoder_layers_path

    layers = model.get_submodule(encoder_layers_path(model))
    sums = [0.0] * len(layers)
    count = 0
    captured: dict[int, torch.Tensor] = {}

    def before(i):
        def hook(module, args, kwargs):
            captured[i] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        return hook

    def after(i):
        def hook(module, args, kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(captured.pop(i).float(), out.float(), dim=-1)
            sums[i] += float(cos.sum())
        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(before(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(after(i), with_kwargs=True))
    try:
        with torch.no_grad():
            for ids in sequences:
                model(input_ids=torch.tensor([ids]), use_cache=False)
                count += len(ids)
    finally:
        for handle in handles:
            handle.remove()
    if count == 0:
        raise EdgekdError("block influence needs at least one calibration text with tokens")
    return [1.0 - s / count for s in sums]


def choose_layers(cfg, teacher, tokenizer, texts: list[str], max_length: int) -> dict:
    """Resolve `student.from_teacher` (`cfg`, a FromTeacherConfig with `keep`) against the
    teacher: returns {"select", "keep", "layers", and for block_influence "block_influence"
    (one value per teacher layer), "calibration_chunks", "calibration_tokens"}."""
    n = teacher.config.num_hidden_layers
    check_keep(cfg.keep, n)
    if cfg.select == "spread":
        return {"select": "spread", "keep": cfg.keep, "layers": spread_layers(cfg.keep, n)}
    encoded = tokenizer(list(texts[:cfg.calibration_chunks]), truncation=True,
                        max_length=max_length)["input_ids"]
    sequences = [ids for ids in encoded if ids]
    influence = block_influence(teacher, sequences)
    return {"select": "block_influence", "keep": cfg.keep,
            "layers": highest_influence(influence, cfg.keep),
            "block_influence": [round(v, 6) for v in influence],
            "calibration_chunks": len(sequences),
            "calibration_tokens": sum(len(s) for s in sequences)}
