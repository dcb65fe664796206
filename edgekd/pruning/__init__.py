"""Making a student genuinely smaller: structured width pruning and vocabulary trimming.

- `importance.activation_importance(model, batches)`: Minitron activation ranking of heads,
  FFN neurons and hidden channels on calibration batches (`importance.calibration_batches`).
- `width.prune_width(model, hidden=, heads=, ffn=, importance=)` / `width.PruneSpec(ratios)`:
  a smaller model of the same class whose config matches its weights.
- `vocab.trim_vocabulary(model, tokenizer, texts, budget=)`: a student tokenizer and model that
  keep only the tokens a corpus uses, with the id maps between teacher and student.

Nothing here imports torch or transformers at module level (the CLI may import this package).
"""

from edgekd.pruning.importance import Importance, activation_importance, calibration_batches
from edgekd.pruning.slicing import parameter_count
from edgekd.pruning.vocab import (VocabTrim, kept_teacher_logits, load_vocab_map, trim_embeddings,
                                  trim_vocabulary)
from edgekd.pruning.width import PruneSpec, prune_width

__all__ = ["Importance", "PruneSpec", "VocabTrim", "activation_importance", "calibration_batches",
           "kept_teacher_logits", "load_vocab_map", "parameter_count", "prune_width",
           "trim_embeddings", "trim_vocabulary"]
