"""On-policy distillation of a causal LM (GKD, Agarwal et al. 2024, "On-Policy Distillation of
Language Models: Learning from Self-Generated Mistakes", Algorithm 1).

With probability lambda (`distill.on_policy.fraction`) a training step does not use the cached
text: the student samples continuations y ~ q_theta(. | x) of prompts x (the first
`prompt_tokens` tokens of the batch's chunks), the live teacher scores them, and the loss is

    L_on = E_{x, y ~ q_theta} [ 1/|y| sum_n D(p_T(. | y_<n, x) || q_theta(. | y_<n, x)) ],

with D the recipe's divergence (`distill.kd`, at `distill.temperature`). No gradient flows
through the sampling (GKD's choice: the expectation is over the student's outputs, not
differentiated through them). The other 1 - lambda of the steps are the usual off-policy ones
on the cached teacher (`lm_losses.lm_distill_loss`). The student trains on the sequences it
will produce at inference, which is what fixes the train/inference mismatch of plain KD.

The teacher runs in the loop here (unlike the cached off-policy steps), so on-policy steps cost
a student generation and a teacher forward pass each: an opt-in (`distill.on_policy: null` by
default). For a vocabulary-trimmed student the sampled ids go to the teacher through
`student_to_teacher`, and the teacher's distribution is renormalised over the kept tokens
(`pruning.vocab.kept_teacher_logits`).
"""

from __future__ import annotations

import random

import torch


class OnPolicy:
    """The on-policy half of GKD for `LMDistillationTrainer`: `wants(step)` decides a step's
    kind (seeded by the step number, so all processes of a DDP group and a resumed run decide
    alike), `loss(model, batch)` computes the on-policy loss or returns None when the batch
    holds no prompt of `prompt_tokens` real tokens. `sampler` is the bare student (DDP's
    wrapper only for the forward pass that carries the gradient)."""

    def __init__(self, teacher, config, distill, student_to_teacher=None):
        self.teacher = teacher.eval().requires_grad_(False)
        self.config = config
        self.distill = distill
        self.index = (None if student_to_teacher is None
                      else torch.as_tensor(list(student_to_teacher), dtype=torch.long))
        self.teacher_calls = 0

    def wants(self, step: int) -> bool:
        return random.Random(f"{self.distill.seed}-on-policy-{step}").random() < self.config.fraction

    def loss(self, model, batch: dict, step: int, sampler=None):
        from edgekd.distillation.lm_losses import DIVERGENCES, divergence_options

        prompts = prompt_rows(batch["input_ids"], batch["attention_mask"], self.config.prompt_tokens)
        if prompts is None:
            return None
        sequences = sample_continuations(sampler or model, prompts, self.config.new_tokens,
                                         self.config.sample_temperature,
                                         seed=f"{self.distill.seed}-{step}")
        teacher_logits = self.teacher_logits(sequences)
        logits = model(input_ids=sequences).logits
        # position t predicts token t + 1: the generated tokens are targets P .. P + N - 1
        mask = torch.zeros(sequences.shape[0], sequences.shape[1] - 1, dtype=torch.bool,
                           device=sequences.device)
        mask[:, prompts.shape[1] - 1:] = True
        d = self.distill
        return DIVERGENCES[d.kd](logits[:, :-1], teacher_logits[:, :-1], mask,
                                 temperature=d.temperature, **divergence_options(d.kd, d.beta, d.skew))

    @torch.no_grad()
    def teacher_logits(self, sequences: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on the student's sequences, in the student's vocabulary."""
        from edgekd.pruning.vocab import kept_teacher_logits

        self.teacher_calls += 1
        if next(self.teacher.parameters()).device != sequences.device:
            self.teacher.to(sequences.device)   # the Trainer put the student on the GPU
        if self.index is None:
            return self.teacher(input_ids=sequences).logits
        index = self.index.to(sequences.device)
        logits = self.teacher(input_ids=index[sequences]).logits
        return kept_teacher_logits(logits, index)


def prompt_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_tokens: int):
    """The first `prompt_tokens` tokens of every row whose first `prompt_tokens` tokens are all
    real (not padding), or None when there is no such row."""
    if input_ids.shape[1] < prompt_tokens:
        return None
    full = attention_mask[:, :prompt_tokens].bool().all(dim=1)
    if not bool(full.any()):
        return None
    return input_ids[full, :prompt_tokens]


@torch.no_grad()
def sample_continuations(model, prompts: torch.Tensor, new_tokens: int, temperature: float,
                         seed: str) -> torch.Tensor:
    """prompts [B, P] followed by exactly `new_tokens` tokens sampled from the student at
    `temperature` (no early stop at end-of-sequence: every row has the same length, so there
    is no padding to mask), [B, P + new_tokens]. The sampling is seeded by `seed`."""
    generator = torch.Generator(device=prompts.device)
    generator.manual_seed(random.Random(seed).getrandbits(63))
    was_training = model.training
    model.eval()
    try:
        sequences, past = prompts, None
        step_input = prompts
        for _ in range(new_tokens):
            out = model(input_ids=step_input, past_key_values=past, use_cache=True)
            past = out.past_key_values
            probs = torch.softmax(out.logits[:, -1].float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)
            sequences = torch.cat([sequences, token], dim=1)
            step_input = token
    finally:
        model.train(was_training)
    return sequences
