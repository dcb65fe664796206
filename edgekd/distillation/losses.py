"""Distillation losses. Each cites its paper and formula; all take raw logits / features.

Shapes: logits [B, C]; hidden states [B, L, H]; attention probabilities [B, heads, L, L];
`mask` [B, L] is the attention mask (1 = real token).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label of an unlabeled example: it contributes the soft term only


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", eq. 2 ff.:

        L_soft = T^2 * KL( softmax(z_t / T) || softmax(z_s / T) ),  averaged over the batch.

    The T^2 factor keeps the gradient scale of the soft term independent of T (the gradients of
    the softened targets scale as 1/T^2).
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * t * t


def hinton_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   labels: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. 2015: the weighted mix of the soft-label term and the task loss,

        L = alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(z_s, y).

    The soft term averages over every example; the cross-entropy averages over labelled
    examples only (label == -100 marks an unlabeled one, which contributes the soft term only).
    """
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    labelled = labels != IGNORE_INDEX
    if alpha >= 1.0 or not bool(labelled.any()):
        hard = student_logits.new_zeros(())
    else:
        hard = F.cross_entropy(student_logits[labelled], labels[labelled])
    return alpha * soft + (1.0 - alpha) * hard


def hidden_state_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """FitNets (Romero et al. 2015) / TinyBERT (Jiao et al. 2020, eq. 8) hidden-state loss:

        L_hidn = MSE(H_s W_h, H_t),

    the student's hidden states (already projected by the learned W_h when widths differ) against
    the teacher's, averaged over real (unpadded) tokens and the hidden dimension.
    """
    weights = mask.unsqueeze(-1).to(student_hidden.dtype)
    squared = (student_hidden - teacher_hidden).pow(2) * weights
    return squared.sum() / (weights.sum() * student_hidden.shape[-1]).clamp_min(1.0)


def attention_loss(student_attn: torch.Tensor, teacher_attn: torch.Tensor,
                   mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """MiniLM (Wang et al. 2020, eq. 3) self-attention distribution transfer:

        L_AT = 1/(A_h |x|) * sum_a sum_t KL( A^T_{a,t} || A^S_{a,t} ),

    the KL divergence between teacher and student attention distributions of every head a and
    query token t, averaged over heads and real query tokens. Needs the same head count in both
    (when they differ, the head-averaged distributions are compared).
    """
    if student_attn.shape[1] != teacher_attn.shape[1]:
        student_attn = student_attn.mean(dim=1, keepdim=True)
        teacher_attn = teacher_attn.mean(dim=1, keepdim=True)
    kl = teacher_attn * (torch.log(teacher_attn + eps) - torch.log(student_attn + eps))
    per_query = kl.sum(dim=-1)                               # [B, heads, L]
    weights = mask[:, None, :].to(per_query.dtype)           # only real query tokens
    heads = per_query.shape[1]
    return (per_query * weights).sum() / (weights.sum() * heads).clamp_min(1.0)
