"""Token-level distillation losses for a causal-LM student. Each cites its paper and formula.

Shapes: student logits [B, L, V]; `mask` [B, L] (True = a position that counts). Every divergence
is computed per position and averaged over the positions of `mask`. p is the teacher's
next-token distribution, q the student's; both are softened by the temperature T.

The teacher comes in one of two forms:

- dense: its logits [B, L, V] (same vocabulary as the student);
- sparse: a `SparseTeacher` holding, per position, the indices of its top-k tokens and their
  log-probabilities over the *full* vocabulary (not renormalised), as cached by `lm_cache`.

A sparse teacher is compared with the student on a coarse-grained vocabulary of k + 1 buckets:
the k teacher tokens, plus one "tail" bucket holding all the other tokens. The teacher's tail
mass is 1 - sum(top-k probabilities); the student's is the exact softmax mass of its logits off
the top-k (a log-sum-exp over the other tokens, so its gradient is exact). Both are proper
distributions over the same k + 1 outcomes, so every divergence below is defined as is; by the
data-processing inequality the k + 1-bucket f-divergence is a lower bound of the full-vocabulary
one, tight when k = V (no tail) or when the two tails are proportional. (Renormalising the
top-k instead would leave whatever mass the student puts outside them unpenalised.)
Because the fp16 cached values may add up to slightly more than 1, the teacher's tail mass is
floored at `TAIL_FLOOR` and its k + 1 buckets renormalised.

A vocabulary-trimmed student (`edgekd.pruning.trim_vocabulary`) reads the cached teacher ids
through `teacher_to_student` (`lm_cache.TopKShardDataset(vocab_map=...)`); a teacher token the
student dropped becomes id -1. Such a slot is no bucket of its own: its teacher probability is
counted in the tail (1 - the kept top-k mass), and the student has no such token to score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgekd.errors import EdgekdError

IGNORE_INDEX = -100   # label of a position without a next token (padding, or masked out)
TAIL_FLOOR = 1e-6     # least teacher tail mass: fp16 log-probs can sum to a hair over 1


@dataclass
class SparseTeacher:
    """The teacher's top-k next-token log-probabilities at every position.

    `indices` [B, L, k] student token ids, -1 for a teacher token the student's vocabulary
    lacks (its probability then counts in the tail bucket); `log_probs` [B, L, k] log
    softmax(z_t / temperature) of those tokens over the teacher's full vocabulary.
    `temperature` is the one they were computed at: a loss must use the same one (the tail
    cannot be re-tempered without the other logits).
    """
    indices: torch.Tensor
    log_probs: torch.Tensor
    temperature: float = 1.0

    def to(self, device) -> "SparseTeacher":
        return SparseTeacher(self.indices.to(device), self.log_probs.to(device), self.temperature)

    def shifted(self) -> "SparseTeacher":
        """Positions 0 .. L-2 (the ones that predict a next token of the sequence)."""
        return SparseTeacher(self.indices[:, :-1], self.log_probs[:, :-1], self.temperature)


def paired_log_probs(student_logits: torch.Tensor, teacher, temperature: float = 1.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p_teacher, log q_student) [B, L, S] on a shared support of S outcomes: the full
    vocabulary for dense teacher logits, the k top tokens (+ the tail bucket when k < V) for a
    `SparseTeacher`. The teacher side carries no gradient."""
    if isinstance(teacher, SparseTeacher):
        return _sparse_pair(student_logits, teacher, temperature)
    if teacher.shape != student_logits.shape:
        raise EdgekdError(f"teacher logits {tuple(teacher.shape)} do not match the student's "
                          f"{tuple(student_logits.shape)} (same tokenizer and vocabulary needed)")
    log_q = F.log_softmax(_tempered(student_logits, temperature), dim=-1)
    log_p = F.log_softmax(_tempered(teacher.detach(), temperature), dim=-1)
    return log_p, log_q


def _tempered(logits: torch.Tensor, temperature: float, copy: bool = False) -> torch.Tensor:
    """logits / T in float32, as one [B, L, V] allocation at most (none for float32 logits at
    T = 1 unless `copy`): the vocabulary axis makes every full copy expensive."""
    scaled = logits.to(torch.float32, copy=copy)
    if temperature != 1.0:
        scaled = scaled.div_(temperature) if scaled is not logits else scaled / temperature
    return scaled


def _sparse_pair(student_logits, teacher: SparseTeacher, temperature: float):
    if abs(teacher.temperature - temperature) > 1e-9:
        raise EdgekdError(f"the cached teacher log-probs are at temperature {teacher.temperature}, "
                          f"the loss asks for {temperature}: rebuild the cache at that temperature")
    vocab, k = student_logits.shape[-1], teacher.indices.shape[-1]
    index = teacher.indices.long()
    if int(index.max()) >= vocab:
        raise EdgekdError(f"teacher token id {int(index.max())} is outside the student's "
                          f"vocabulary of {vocab} (a vocabulary-trimmed student needs vocab_map)")
    kept = index >= 0
    some_dropped = not bool(kept.all())
    if some_dropped and k >= vocab:
        raise EdgekdError(f"top-k of {k} leaves no tail in the student's vocabulary of {vocab}: "
                          "rebuild the cache with a smaller k")
    # The most negative float, not -inf, for "no mass": gradients and differences stay finite.
    lowest = torch.finfo(torch.float32).min
    if some_dropped:
        # A dropped slot points at a kept token of its position (token 0 if none), so gather and
        # scatter stay in range and mask nothing extra; its values are replaced below.
        fallback = index.masked_fill(~kept, -1).amax(-1, keepdim=True).clamp_min(0)
        index = torch.where(kept, index, fallback)
    log_p = teacher.log_probs.detach().float().masked_fill(~kept, lowest)
    # gathered from the logits, not from `scaled` (gather saves its input, which is masked below)
    top = _tempered(student_logits.gather(-1, index), temperature).masked_fill(~kept, lowest)
    if k < vocab:
        # Student tail: the softmax mass off the kept top-k, a log-sum-exp over the other logits
        # (exact gradient), masked in place in the one [B, L, V] copy this function makes.
        scaled = _tempered(student_logits, temperature, copy=True)
        off_top = torch.logsumexp(scaled.scatter_(-1, index, lowest), -1)
        log_z = torch.logaddexp(off_top, torch.logsumexp(top, -1))
        log_q = torch.cat([top - log_z.unsqueeze(-1), (off_top - log_z).unsqueeze(-1)], dim=-1)
        p_tail = (1.0 - log_p.exp().sum(-1)).clamp_min(TAIL_FLOOR)
        log_p = torch.cat([log_p, p_tail.log().unsqueeze(-1)], dim=-1)
    else:
        log_q = top - torch.logsumexp(_tempered(student_logits, temperature), -1, keepdim=True)
    # fp16 rounding: make the teacher's buckets sum to exactly 1
    return torch.log_softmax(log_p, dim=-1), log_q


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) = sum_v a(v) (log a(v) - log b(v)) over the last dim; a(v) = 0 terms are 0."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def _mixture(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(w a + (1 - w) b), computed in log space."""
    def log_weight(w: float) -> float:
        return math.log(w) if w > 0 else float("-inf")
    return torch.logaddexp(log_a + log_weight(weight_a), log_b + log_weight(1.0 - weight_a))


def masked_mean(per_position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `per_position` [B, L] over the True positions of `mask` (0 when there are none)."""
    mask = mask.bool()
    total = torch.where(mask, per_position, torch.zeros_like(per_position)).sum()
    return total / mask.sum().clamp_min(1)


def forward_kl(student_logits, teacher, mask, temperature: float = 1.0) -> torch.Tensor:
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", eq. 2 ff.,
    applied at every token (word-level KD, Kim & Rush 2016, eq. 5):

        L_FKL = T^2 * mean_t KL( p_t || q_t ),  p = softmax(z_t / T), q = softmax(z_s / T).

    Mode-covering. The T^2 factor keeps the gradient scale independent of T.
    """
    log_p, log_q = paired_log_probs(student_logits, teacher, temperature)
    return masked_mean(_kl(log_p, log_q), mask) * temperature ** 2


def reverse_kl(student_logits, teacher, mask, temperature: float = 1.0) -> torch.Tensor:
    """MiniLLM (Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models",
    eq. 1) reverse KL, here at the token level on the given sequences:

        L_RKL = T^2 * mean_t KL( q_t || p_t ).

    Mode-seeking: the student is penalised for mass where the teacher has little. (MiniLLM
    optimises it over student-sampled sequences with policy gradient; this is the per-token
    term on fixed sequences, as in DistiLLM's and GKD's supervised variants.)
    """
    log_p, log_q = paired_log_probs(student_logits, teacher, temperature)
    return masked_mean(_kl(log_q, log_p), mask) * temperature ** 2


def jensen_shannon(student_logits, teacher, mask, beta: float = 0.5,
                   temperature: float = 1.0) -> torch.Tensor:
    """GKD (Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from
    Self-Generated Mistakes", sec. 2) generalized Jensen-Shannon divergence, with P = teacher
    and Q = student as in the paper's D(p_T || p_S):

        JSD_beta(P || Q) = beta KL(P || M) + (1 - beta) KL(Q || M),  M = beta P + (1 - beta) Q.

    0 < beta < 1. JSD_beta / beta -> KL(P || Q) as beta -> 0 and JSD_beta / (1 - beta) ->
    KL(Q || P) as beta -> 1, so small beta behaves like forward KL, large like reverse KL; the
    value itself goes to 0 at both ends (use forward_kl / reverse_kl for those). beta = 0.5 is
    the ordinary JSD. Scaled by T^2 like the others.
    """
    if not 0.0 < beta < 1.0:
        raise EdgekdError(f"jsd beta must be strictly between 0 and 1, got {beta}")
    log_p, log_q = paired_log_probs(student_logits, teacher, temperature)
    log_m = _mixture(log_p, log_q, beta)
    per_position = beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)
    return masked_mean(per_position, mask) * temperature ** 2


def skew_kl(student_logits, teacher, mask, skew: float = 0.1,
            temperature: float = 1.0) -> torch.Tensor:
    """DistiLLM (Ko et al. 2024, "DistiLLM: Towards Streamlined Distillation for Large Language
    Models", eq. 3) skew KL, p = teacher, q = student:

        SKL_alpha(p, q) = KL( p || alpha p + (1 - alpha) q ),  0 <= alpha < 1 (paper: 0.1).

    alpha = 0 is forward KL; alpha > 0 bounds the divergence and its gradient when q -> 0.
    """
    if not 0.0 <= skew < 1.0:
        raise EdgekdError(f"skew alpha must be in [0, 1), got {skew}")
    log_p, log_q = paired_log_probs(student_logits, teacher, temperature)
    return masked_mean(_kl(log_p, _mixture(log_p, log_q, skew)), mask) * temperature ** 2


def skew_reverse_kl(student_logits, teacher, mask, skew: float = 0.1,
                    temperature: float = 1.0) -> torch.Tensor:
    """DistiLLM (Ko et al. 2024, eq. 4) skew reverse KL, p = teacher, q = student:

        SRKL_alpha(p, q) = KL( q || alpha q + (1 - alpha) p ),  0 <= alpha < 1.

    alpha = 0 is reverse KL.
    """
    if not 0.0 <= skew < 1.0:
        raise EdgekdError(f"skew alpha must be in [0, 1), got {skew}")
    log_p, log_q = paired_log_probs(student_logits, teacher, temperature)
    return masked_mean(_kl(log_q, _mixture(log_q, log_p, skew)), mask) * temperature ** 2


DIVERGENCES = {"forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": jensen_shannon,
               "skew_kl": skew_kl, "skew_reverse_kl": skew_reverse_kl}


def next_token_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean -log q(y_{t+1} | y_<=t) over positions whose next label is not IGNORE_INDEX; the
    logits at position t are scored against labels[t + 1] (labels = input ids, HF style)."""
    logits, targets = student_logits[:, :-1], labels[:, 1:]
    if not bool((targets != IGNORE_INDEX).any()):
        return student_logits.sum() * 0.0        # keeps the graph for a batch of pure padding
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def divergence_options(kind: str, beta: float, skew: float) -> dict:
    """The keyword arguments DIVERGENCES[kind] takes beyond the temperature."""
    return {"jsd": {"beta": beta}, "skew_kl": {"skew": skew},
            "skew_reverse_kl": {"skew": skew}}.get(kind, {})


def lm_distill_loss(student_logits: torch.Tensor, teacher, labels: torch.Tensor, *,
                    kind: str = "forward_kl", alpha: float = 0.5, temperature: float = 1.0,
                    beta: float = 0.5, skew: float = 0.1) -> torch.Tensor:
    """The token-level distillation loss mixed with the next-token cross-entropy (Hinton 2015):

        L = alpha * D_kind(p_teacher, q_student) + (1 - alpha) * CE(student, next token),

    over the positions that predict a real next token (labels[:, 1:] != -100): logits and the
    teacher at position t are aligned with labels[t + 1], so `teacher` (dense [B, L, V] logits
    or a `SparseTeacher` [B, L, k]) covers the same L positions as `student_logits`. `kind` is
    one of DIVERGENCES; `beta` is used by "jsd", `skew` by "skew_kl" / "skew_reverse_kl".
    """
    if kind not in DIVERGENCES:
        raise EdgekdError(f"unknown distillation loss {kind!r}; choose from {sorted(DIVERGENCES)}")
    if not 0.0 <= alpha <= 1.0:
        raise EdgekdError(f"alpha must be in [0, 1], got {alpha}")
    mask = labels[:, 1:] != IGNORE_INDEX
    shifted_teacher = teacher.shifted() if isinstance(teacher, SparseTeacher) else teacher[:, :-1]
    soft = DIVERGENCES[kind](student_logits[:, :-1], shifted_teacher, mask,
                             temperature=temperature, **divergence_options(kind, beta, skew))
    if alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * next_token_cross_entropy(student_logits, labels)
