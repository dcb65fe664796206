"""Training a causal-LM student on the teacher's cached top-k predictions, on the HF `Trainer`.

Only the loss is overridden (`lm_losses.lm_distill_loss`), so the Trainer's schedule,
checkpoints (resume), logging and multi-process training (`torchrun` / `accelerate launch`,
gloo on CPU) work unchanged. The teacher never runs in the loop: every batch carries its
top-k log-probabilities from the cache. The one exception is opt-in: with
`distill.on_policy`, a share of the steps are GKD's on-policy steps (`lm_on_policy`), where the
student samples continuations and the live teacher scores them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from edgekd.recipe import DistillConfig


class CachedTopKDataset(torch.utils.data.Dataset):
    """The sequences of a finished top-k cache (`lm_cache.build_topk_cache`) as a map-style
    dataset (so the Trainer's samplers shard and shuffle it per process). `vocab_map`
    (teacher_to_student) gives a trimmed student its own ids (`lm_cache.TopKShardDataset`).

    All shards are read into memory: fine for a corpus of a few hundred thousand tokens; a
    corpus larger than memory would use `lm_cache.TopKShardDataset` (streaming) instead."""

    def __init__(self, cache_dir: Path, vocab_map=None):
        from edgekd.distillation.lm_cache import TopKShardDataset

        stream = TopKShardDataset(cache_dir, vocab_map=vocab_map)
        self.temperature = stream.temperature
        self.rows = list(stream)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def collate(rows: list[dict], pad_token_id: int = 0) -> dict:
    """Right-padded `input_ids`, `attention_mask`, `labels` (-100 on padding) and the teacher's
    `teacher_indices` / `teacher_log_probs` [B, L, k] as plain tensors (the Trainer moves
    tensors to the device; a `SparseTeacher` is rebuilt in the loss)."""
    from edgekd.distillation.lm_cache import collate_topk

    batch = collate_topk(rows, pad_token_id)
    teacher = batch.pop("teacher")
    return {**batch, "teacher_indices": teacher.indices, "teacher_log_probs": teacher.log_probs}


class LMDistillationTrainer(Trainer):
    """A `Trainer` whose loss is `lm_distill_loss` (recipe `distill.kd`, alpha, temperature,
    beta, skew) of the student against the cached sparse teacher."""

    def __init__(self, *args, distill: DistillConfig, cache_temperature: float, on_policy=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.distill = distill
        self.cache_temperature = cache_temperature
        self.on_policy = on_policy           # lm_on_policy.OnPolicy, or None (off-policy only)
        self.on_policy_steps = 0
        # Our loss is already a per-token mean: no rescaling by the Trainer for token counts.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from edgekd.distillation.lm_losses import SparseTeacher, lm_distill_loss

        d = self.distill
        step = self.state.global_step
        if self.on_policy is not None and model.training and self.on_policy.wants(step):
            loss = self.on_policy.loss(model, inputs, step, sampler=self.accelerator.unwrap_model(model))
            if loss is None:
                # no row with a full prompt: a zero loss, so that every process of a DDP group
                # still runs one forward and backward pass (and none waits in an all-reduce)
                loss = model(input_ids=inputs["input_ids"][:, :1]).logits.sum() * 0.0
            self.on_policy_steps += 1
            return (loss, None) if return_outputs else loss
        labels = inputs.pop("labels")
        teacher = SparseTeacher(inputs.pop("teacher_indices"), inputs.pop("teacher_log_probs"),
                                self.cache_temperature)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss = lm_distill_loss(outputs.logits, teacher, labels, kind=d.kd, alpha=d.alpha,
                               temperature=d.temperature, beta=d.beta, skew=d.skew)
        if self.args.world_size > 1:
            loss = loss * self._token_share(labels)
        return (loss, outputs) if return_outputs else loss

    def _token_share(self, labels) -> torch.Tensor:
        """world size x this process's share of the step's predicted tokens. The loss is a mean
        over this process's tokens and DDP averages the gradients over processes; this factor
        makes the result the mean over all the step's tokens, as one process computes it (with
        sequences of different lengths a mean of per-process means would weight them otherwise)."""
        from edgekd.distillation.lm_losses import IGNORE_INDEX

        local = (labels[:, 1:] != IGNORE_INDEX).sum().float()
        total = local.detach().clone()
        torch.distributed.all_reduce(total)
        return local * self.args.world_size / total.clamp_min(1.0)


def _distributed() -> bool:
    """Started by torchrun / accelerate launch with more than one process."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def lm_training_arguments(output_dir: Path, d: DistillConfig, steps_per_epoch: int) -> TrainingArguments:
    """Like the classifier's `training_arguments` (a checkpoint every epoch for resume, linear
    decay with 10% warm-up), plus the gloo backend when there is no GPU, so `torchrun
    --nproc_per_node N` runs the same training on CPU processes."""
    cpu_group = _distributed() and not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=d.epochs, learning_rate=d.learning_rate,
        per_device_train_batch_size=d.batch_size, warmup_ratio=0.1, weight_decay=0.01,
        lr_scheduler_type="linear", save_strategy="epoch", save_total_limit=1, eval_strategy="no",
        logging_steps=max(1, steps_per_epoch // 4), report_to=[], seed=d.seed, data_seed=d.seed,
        remove_unused_columns=False, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Several CPU processes: accelerate makes them one DDP group only when told "cpu".
        use_cpu=cpu_group, ddp_backend="gloo" if cpu_group else None,
        disable_tqdm=False)
