"""Finding model folders and building the student from the teacher (any Hugging Face model;
the task module chooses the model class).

The student can be (a) a copy of the teacher's embeddings and a chosen subset of its layers
(DistilBERT-style initialisation, Sanh et al. 2019), (b) a fresh random model from the teacher's
config with overrides, or (c) an existing model.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from edgekd.errors import EdgekdError, first_line
from edgekd.recipe import StudentConfig, resolve_path


def check_model_source(value: str, what: str) -> str:
    """Resolve `value` (folder, `package:` path or hub id) and fail early on a missing folder."""
    resolved = resolve_path(value)
    looks_local = (os.sep in resolved or resolved.startswith(".")) and not _is_hub_id(resolved)
    if looks_local or Path(resolved).exists():
        folder = Path(resolved)
        if not folder.is_dir():
            raise EdgekdError(f"{what} model folder not found: {resolved}")
        if not (folder / "config.json").is_file():
            raise EdgekdError(f"{what} folder {resolved} is not a Hugging Face model (no config.json)")
    return resolved


def _is_hub_id(value: str) -> bool:
    # "org/name" with no leading slash or dot and nothing on disk: a Hugging Face id
    parts = value.split("/")
    return (len(parts) == 2 and all(parts) and not Path(value).exists()
            and not value.startswith(("/", ".", "~")))


def load_config(source: str):
    """The model's config (cheap: no weights), with a clear error when it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot load model config from '{source}': {first_line(exc)}") from None


def load_tokenizer(source: str):
    """The tokenizer saved with a model (folder or id)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot load the tokenizer of '{source}': {first_line(exc)}") from None


def encoder_layers_path(model) -> str:
    """Dotted path of the encoder's layer list (e.g. `bert.encoder.layer`), found by shape:
    the ModuleList whose length is the config's layer count."""
    import torch.nn as nn

    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and name:
            return name
    raise EdgekdError(f"cannot find the encoder layers of a {type(model).__name__}")


def check_student_config(cfg: StudentConfig, teacher_config) -> None:
    """Reject layer indices out of range before any work starts."""
    if cfg.from_teacher is not None and cfg.from_teacher.layers is not None:
        n = teacher_config.num_hidden_layers
        bad = [i for i in cfg.from_teacher.layers if i >= n]
        if bad:
            raise EdgekdError(f"student.from_teacher.layers: layer {bad[0]} is out of range "
                              f"(the teacher has {n} layers: 0..{n - 1})")
    elif cfg.from_teacher is not None:
        from edgekd.distillation.lm_layers import check_keep

        check_keep(cfg.from_teacher.keep, teacher_config.num_hidden_layers)
    if cfg.config is not None:
        unknown = [k for k in cfg.config if not hasattr(teacher_config, k)]
        if unknown:
            raise EdgekdError(f"student.config.{unknown[0]} is not a field of the teacher's "
                              f"{type(teacher_config).__name__}")
        check_buildable(student_model_config(cfg, teacher_config), "student.config")


def student_model_config(cfg: StudentConfig, teacher_config):
    """The config `build_student` gives a student made from the teacher (from_teacher or
    config overrides), without building it."""
    config = copy.deepcopy(teacher_config)
    if cfg.config is not None:
        for key, value in cfg.config.items():
            setattr(config, key, value)
    elif cfg.from_teacher is not None:
        config.num_hidden_layers = cfg.from_teacher.count
    return config


def student_layer_count(cfg: StudentConfig, teacher_config) -> int:
    """How many encoder layers the student will have (for checking the layer map up front)."""
    if cfg.model is not None:
        return load_config(resolve_path(cfg.model)).num_hidden_layers
    return student_model_config(cfg, teacher_config).num_hidden_layers


def check_weights_fit(folder: str | Path, config, what: str) -> None:
    """The shapes in the folder's safetensors headers against the model its config.json makes
    (built on the meta device): a config edited after saving, or weights from another model,
    is refused here in one line instead of as a state_dict traceback while loading."""
    import torch
    from transformers import AutoModel

    from edgekd.checks import safetensors_header

    stored = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        stored.update({name: entry.get("shape") for name, entry in safetensors_header(path).items()})
    try:
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in AutoModel.from_config(config).state_dict().items()}
    except Exception:  # noqa: BLE001 - a config no base model is made from: the loader will say
        return
    for name, shape in stored.items():
        # The stored names carry the task head's prefix (`bert.`); the base model's do not.
        base = next((k for k in (name, name.partition(".")[2]) if k in expected), None)
        if base is not None and shape is not None and list(shape) != expected[base]:
            raise EdgekdError(f"{what} weights do not fit its config.json: {name} has shape "
                              f"{list(shape)}, the config makes {expected[base]}")


def check_buildable(config, what: str) -> None:
    """Build the model skeleton of `config` on the meta device (no memory, no weights): a head
    count that does not divide the width, a size of the wrong type or sign is refused here, in
    the model's own words, instead of after the teacher has been fine-tuned."""
    import torch
    from transformers import AutoModel

    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        value = getattr(config, key, None)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise EdgekdError(f"{what}: {key} must be a positive integer, got {value!r}")
    try:
        with torch.device("meta"):
            AutoModel.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any failure to build is a bad config, said in one line
        raise EdgekdError(f"{what} does not make a valid {type(config).__name__}: "
                          f"{first_line(exc)}") from None


def build_student(cfg: StudentConfig, teacher, labels: list[str], task=None):
    """Build the student model for `cfg` from the (fine-tuned) teacher; an existing student
    model is loaded by the task (default: the recipe's default task)."""
    import torch

    if cfg.model is not None:
        from edgekd.tasks import get_task

        return (task or get_task()).load_model(check_model_source(cfg.model, "student"), labels,
                                               "student")
    config = copy.deepcopy(teacher.config)
    if cfg.config is not None:
        for key, value in cfg.config.items():
            setattr(config, key, value)
        model_cls = type(teacher)
        torch.manual_seed(0)
        return model_cls(config)
    layers = cfg.from_teacher.layers
    if layers is None:      # `keep`: the causal-LM stage chooses them (lm_layers) and fills them in
        raise EdgekdError("student.from_teacher.keep chooses layers for causal-LM students only; "
                          "name the layers with student.from_teacher.layers")
    config.num_hidden_layers = len(layers)
    student = type(teacher)(config)
    copy_teacher_weights(teacher, student, layers)
    return student


def copy_teacher_weights(teacher, student, layers: list[int]) -> None:
    """Copy every teacher weight into the student, mapping student layer i to teacher layer
    `layers[i]`; embeddings, pooler and classifier are copied as they are."""
    path = encoder_layers_path(teacher)
    prefix = path + "."
    teacher_state = teacher.state_dict()
    new_state = {}
    for key in student.state_dict():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            source = f"{prefix}{layers[int(index)]}.{rest}"
        else:
            source = key
        new_state[key] = teacher_state[source].clone()
    student.load_state_dict(new_state)


def count_parameters(model) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel()
    return total
