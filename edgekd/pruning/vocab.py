"""Vocabulary trimming: a student that only knows the tokens its task's text uses.

`trim_vocabulary(model, tokenizer, texts)` keeps the tokens `texts` use plus every special
token (see `tokenizer_trim` for what else stays so unseen text still tokenizes), writes a
student tokenizer with new contiguous ids, cuts the embedding rows (and the LM head rows and
bias, tied or not) to the kept tokens, and rewrites `vocab_size` and every `*_token_id` of the
config and generation config. The maps between the two id spaces come back with it:

    trim.student_to_teacher[s] -> teacher id of student id s          (numpy int64)
    trim.teacher_to_student[t] -> student id of teacher id t, -1 if dropped

For distillation of a causal LM, the teacher's logits are cut to the kept tokens with
`kept_teacher_logits` before the softmax, which renormalises the teacher's distribution over
the kept tokens (docs/pruning.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.pruning.layouts import layout_for
from edgekd.pruning.slicing import axis_sizes, rebuild, slice_state_dict
from edgekd.pruning.tokenizer_trim import trim_tokenizer


@dataclass
class VocabTrim:
    """What `trim_vocabulary` returns: the student model and tokenizer and the id maps."""

    model: object
    tokenizer: object
    student_to_teacher: "np.ndarray"  # noqa: F821
    teacher_to_student: "np.ndarray"  # noqa: F821

    def save(self, folder) -> None:
        """Save the model and tokenizer (`save_pretrained`) and the id map (`VOCAB_MAP_FILE`)
        into `folder`, so distillation can cut the teacher's logits to the student's tokens."""
        from edgekd.files import write_json_atomic

        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        write_json_atomic(Path(folder) / VOCAB_MAP_FILE,
                          {"student_to_teacher": self.student_to_teacher.tolist(),
                           "teacher_vocab_size": len(self.teacher_to_student)})


VOCAB_MAP_FILE = "vocab_map.json"


def load_vocab_map(folder):
    """The `student_to_teacher` array saved by `VocabTrim.save` in `folder`, or None when the
    folder's model was not vocabulary-trimmed."""
    import numpy as np

    from edgekd.files import read_json

    path = Path(folder) / VOCAB_MAP_FILE
    if not path.is_file():
        return None
    return np.asarray(read_json(path)["student_to_teacher"], dtype=np.int64)


def teacher_to_student(student_to_teacher, teacher_size: int):
    """The reverse map: an int64 array of `teacher_size` with the student id of each teacher id,
    -1 for dropped tokens."""
    import numpy as np

    reverse = np.full(teacher_size, -1, dtype=np.int64)
    reverse[np.asarray(student_to_teacher)] = np.arange(len(student_to_teacher))
    return reverse


def _token_id_fields(config) -> dict:
    """The `*_token_id` attributes of a config or generation config that hold ids."""
    return {key: value for key, value in vars(config).items()
            if key.endswith("_token_id") and value is not None}


def _configured_ids(model) -> set[int]:
    """Every token id the model's config and generation config name (they must be kept)."""
    ids: set[int] = set()
    for config in (model.config, getattr(model, "generation_config", None)):
        for value in (_token_id_fields(config) if config is not None else {}).values():
            ids.update(value if isinstance(value, (list, tuple)) else [value])
    return {i for i in ids if isinstance(i, int) and i >= 0}


def _remap_token_ids(config, reverse) -> None:
    """Rewrite `config`'s `*_token_id` fields in place through `reverse` (teacher -> student)."""
    def student_id(key, teacher_id):
        if not 0 <= teacher_id < len(reverse) or reverse[teacher_id] < 0:
            raise EdgekdError(f"{key}={teacher_id} names a token the trimmed vocabulary dropped; "
                              "keep it with keep_ids")
        return int(reverse[teacher_id])

    for key, value in _token_id_fields(config).items():
        if isinstance(value, (list, tuple)):
            setattr(config, key, [student_id(key, v) for v in value])
        else:
            setattr(config, key, student_id(key, value))


def embedding_rows(model) -> int:
    """The model's token-embedding rows: its real vocabulary, which may exceed len(tokenizer)
    (Qwen2 pads 151,665 tokens to 151,936 rows); teacher logits and ids live in this range."""
    return axis_sizes(model.state_dict(), layout_for(model))["vocab"]


def trim_embeddings(model, student_to_teacher):
    """A copy of `model` whose vocabulary is the teacher ids `student_to_teacher`, in that order:
    embedding rows, LM head rows and bias cut, `vocab_size` and token ids rewritten."""
    import numpy as np
    import torch

    layout = layout_for(model)
    state = model.state_dict()
    rows = embedding_rows(model)
    index = np.asarray(student_to_teacher, dtype=np.int64)
    if index.size == 0 or index.min() < 0 or index.max() >= rows:
        raise EdgekdError(f"token ids to keep must lie in the model's {rows} embedding rows")
    reverse = teacher_to_student(index, rows)
    config = copy.deepcopy(model.config)
    config.vocab_size = len(index)
    _remap_token_ids(config, reverse)
    if config.model_type in ("roberta", "xlm-roberta") and config.pad_token_id != model.config.pad_token_id:
        # RoBERTa numbers positions from pad_token_id + 1: a new pad id would shift every position
        raise EdgekdError(f"trimming would move {config.model_type}'s pad token id "
                          f"{model.config.pad_token_id} -> {config.pad_token_id}, which shifts its "
                          "position ids; keep every token id below it")
    keep = {"vocab": torch.as_tensor(index)}
    student = rebuild(model, config, slice_state_dict(state, layout, keep))
    if getattr(student, "generation_config", None) is not None and student.can_generate():
        _remap_token_ids(student.generation_config, reverse)
    return student


def trim_vocabulary(model, tokenizer, texts, *, budget: int | None = None) -> VocabTrim:
    """Trim `model` and its fast `tokenizer` to the tokens `texts` use (at most `budget` tokens,
    the most frequent first, when given). The ids the model's config names are always kept."""
    texts = list(texts)
    student_tokenizer, student_to_teacher = trim_tokenizer(
        tokenizer, texts, budget=budget, keep_ids=_configured_ids(model))
    student = trim_embeddings(model, student_to_teacher)
    # one entry per teacher logit (embedding row), not per tokenizer entry: padding rows map to -1
    reverse = teacher_to_student(student_to_teacher, embedding_rows(model))
    return VocabTrim(model=student, tokenizer=student_tokenizer,
                     student_to_teacher=student_to_teacher, teacher_to_student=reverse)


def kept_teacher_logits(teacher_logits, student_to_teacher):
    """The teacher's logits at the kept tokens, in student id order ([..., student vocab]).

    A softmax over these equals the teacher's distribution renormalised over the kept tokens:
    p'_s = p_t(s) / sum_{k kept} p_t(k). Mass the teacher puts on dropped tokens is discarded.
    """
    import torch

    index = torch.as_tensor(student_to_teacher, device=teacher_logits.device)
    return teacher_logits.index_select(-1, index)
