"""Intermediate features through forward hooks on dotted module paths (torchdistill style).

The models are not modified: a `FeatureRecorder` registers hooks for the duration of a forward
pass and keeps what the hooked modules returned.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def record_outputs(model, paths: dict[str, str], output_index: int = 0):
    """Within the block, `store[key]` holds element `output_index` of the output of the module
    at dotted path `paths[key]` (the whole output when it is not a tuple)."""
    store: dict[str, object] = {}
    modules = dict(model.named_modules())
    handles = []
    for key, path in paths.items():
        if path not in modules:
            raise KeyError(f"no module '{path}' in {type(model).__name__}")

        def hook(_module, _inputs, output, key=key):
            store[key] = output[output_index] if isinstance(output, tuple) else output

        handles.append(modules[path].register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def default_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """Evenly spaced mapping, student layer i -> teacher layer ceil((i+1) * T / S) - 1, so the
    last student layer always matches the last teacher layer (TinyBERT's uniform strategy)."""
    return {i: -(-(i + 1) * teacher_layers // student_layers) - 1 for i in range(student_layers)}


def parse_layer_map(raw: dict | None, student_layers: int, teacher_layers: int) -> dict[int, int]:
    """The recipe's `distill.layer_map` (student layer -> teacher layer), checked; the default
    when it is null."""
    if raw is None:
        return default_layer_map(student_layers, teacher_layers)
    from edgekd.errors import EdgekdError

    mapping = {}
    for s, t in raw.items():
        try:
            s_i, t_i = int(s), int(t)
        except (TypeError, ValueError):
            raise EdgekdError(f"distill.layer_map: '{s}: {t}' must map integers to integers") from None
        if not (0 <= s_i < student_layers and 0 <= t_i < teacher_layers):
            raise EdgekdError(f"distill.layer_map: {s_i} -> {t_i} is out of range (student has "
                              f"{student_layers} layers, teacher {teacher_layers})")
        mapping[s_i] = t_i
    return mapping
