"""The recipe's `distill` section: the loss mix, training schedule and the causal-LM options
(divergence, sparse teacher cache, sequence-level KD, on-policy steps). Part of the recipe
(`edgekd.recipe` re-exports these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The token-level losses of edgekd/distillation/lm_losses.py (DIVERGENCES; that module imports
# torch, so the names are repeated here and a test keeps the two equal).
KD_KINDS = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl")


@dataclass
class SequenceKDConfig:
    """Sequence-level KD (Kim & Rush 2016): the teacher's greedy continuations of `prompts`
    prompts (the first `prompt_tokens` tokens of training-text chunks) by `new_tokens` tokens,
    added to the training text (edgekd/distillation/lm_sequence_kd.py)."""
    prompts: int = 128
    new_tokens: int = 64
    prompt_tokens: int = 32

    def __post_init__(self):
        if self.prompts < 1 or self.new_tokens < 1 or self.prompt_tokens < 1:
            raise ValueError("distill.sequence_kd: prompts, new_tokens and prompt_tokens must be >= 1")


@dataclass
class OnPolicyConfig:
    """GKD's on-policy steps (Agarwal et al. 2024): a `fraction` (lambda) of the training steps
    train on the student's own continuations (`new_tokens` tokens sampled at
    `sample_temperature` after the first `prompt_tokens` tokens of each chunk), scored by the
    live teacher (edgekd/distillation/lm_on_policy.py)."""
    fraction: float = 0.5
    prompt_tokens: int = 32
    new_tokens: int = 32
    sample_temperature: float = 1.0

    def __post_init__(self):
        if not 0 < self.fraction <= 1:
            raise ValueError("distill.on_policy.fraction (GKD's lambda) must be in (0, 1]")
        if self.prompt_tokens < 1 or self.new_tokens < 1:
            raise ValueError("distill.on_policy: prompt_tokens and new_tokens must be >= 1")
        if self.sample_temperature <= 0:
            raise ValueError("distill.on_policy.sample_temperature must be > 0")


@dataclass
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.7
    hidden_loss: float = 0.0
    attention_loss: float = 0.0
    layer_map: dict[str, Any] | None = None
    epochs: float = 3
    learning_rate: float = 1.0e-4
    batch_size: int = 16
    seed: int = 0
    cache_teacher: bool = True
    # Causal-LM task only (edgekd/distillation/lm_stage.py); the classifier ignores them.
    kd: str = "forward_kl"        # forward_kl | reverse_kl | jsd | skew_kl | skew_reverse_kl
    beta: float = 0.5             # jsd: the mixture weight of the teacher (GKD)
    skew: float = 0.1             # skew_kl / skew_reverse_kl: the skew alpha (DistiLLM)
    top_k: int = 32               # teacher log-probs cached per position (sparse KD)
    eval_texts: int = 64          # held-out chunks scored for perplexity / agreement
    eval_prompts: int = 16        # held-out prompts whose greedy continuations are compared
    sequence_kd: SequenceKDConfig | None = None   # add the teacher's continuations (off: null)
    on_policy: OnPolicyConfig | None = None       # GKD's on-policy steps (off: null)

    def __post_init__(self):
        if self.kd not in KD_KINDS:
            raise ValueError(f"distill.kd must be one of {', '.join(KD_KINDS)} (got '{self.kd}')")
        if not 0 < self.beta < 1:
            raise ValueError("distill.beta must be strictly between 0 and 1")
        if not 0 <= self.skew < 1:
            raise ValueError("distill.skew must be in [0, 1)")
        if self.top_k < 1 or self.eval_texts < 1 or self.eval_prompts < 1:
            raise ValueError("distill.top_k, eval_texts and eval_prompts must be >= 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 <= self.alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        if self.hidden_loss < 0 or self.attention_loss < 0:
            raise ValueError("hidden_loss and attention_loss must be >= 0")
        if self.epochs <= 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")
