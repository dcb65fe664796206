"""Training on the Hugging Face `Trainer`: teacher fine-tuning and student distillation.

Only the loss is overridden, so the Trainer's schedule, checkpoints (resume), logging, progress
bar and multi-device support (`accelerate launch` / `torchrun`) work unchanged.

With the teacher cache on (the default), every batch carries the teacher's logits and the teacher
never runs in the loop. Hidden-state and attention losses need the teacher's intermediate
features, which are not cached (they would be [N, L, H] per layer): those losses run the teacher
live, under `torch.no_grad`, and cost a teacher forward per step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from edgekd.distillation.features import record_outputs
from edgekd.distillation.losses import attention_loss, hidden_state_loss, hinton_kd_loss
from edgekd.recipe import DistillConfig


class DistillationTrainer(Trainer):
    """A `Trainer` whose loss is Hinton KD plus optional hidden-state and attention terms.

    `teacher` is needed only when the batch has no cached `teacher_logits` or when a feature
    loss is on; `layer_map` maps student layer -> teacher layer for the feature losses, and
    `layer_paths` gives the dotted path of each model's encoder layer list. `teacher_ids` maps
    the student's token ids to the teacher's when the student's vocabulary was trimmed (the
    live teacher reads the same text under its own ids).
    """

    def __init__(self, *args, distill: DistillConfig, teacher=None, layer_map=None,
                 layer_paths: tuple[str, str] | None = None, teacher_ids=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.distill = distill
        self.teacher = teacher
        self.teacher_ids = (torch.as_tensor(teacher_ids, dtype=torch.long)
                            if teacher_ids is not None else None)
        self.layer_map = layer_map or {}
        self.layer_paths = layer_paths
        self.teacher_forward_examples = 0  # how many examples the teacher ran on, for the tests
        self.projections = torch.nn.ModuleDict()
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        if distill.hidden_loss > 0:
            s_width, t_width = self.model.config.hidden_size, teacher.config.hidden_size
            for s in self.layer_map:
                # A learned projection W_h (TinyBERT eq. 8) when the widths differ.
                self.projections[str(s)] = (torch.nn.Linear(s_width, t_width)
                                            if s_width != t_width else torch.nn.Identity())
            self.projections.to(self.args.device)

    def create_optimizer(self):
        optimizer = super().create_optimizer()
        extra = [p for p in self.projections.parameters() if p.requires_grad]
        if extra and not any(p is extra[0] for g in optimizer.param_groups for p in g["params"]):
            optimizer.add_param_group({"params": extra, "weight_decay": 0.0})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        teacher_logits = inputs.pop("teacher_logits", None)
        d = self.distill
        feature_losses = d.hidden_loss > 0 or d.attention_loss > 0
        s_paths, t_paths = self._hook_paths()
        with record_outputs(model, s_paths["hidden"]) as s_hidden, \
                record_outputs(model, s_paths["attention"], output_index=1) as s_attn:
            outputs = model(**inputs)
        if teacher_logits is None or feature_losses:
            with torch.no_grad(), record_outputs(self.teacher, t_paths["hidden"]) as t_hidden, \
                    record_outputs(self.teacher, t_paths["attention"], output_index=1) as t_attn:
                teacher_inputs = dict(inputs)
                if self.teacher_ids is not None:
                    teacher_inputs["input_ids"] = self.teacher_ids.to(
                        inputs["input_ids"].device)[inputs["input_ids"]]
                teacher_out = self.teacher(**teacher_inputs)
            self.teacher_forward_examples += int(labels.shape[0])
            if teacher_logits is None:
                teacher_logits = teacher_out.logits
        loss = hinton_kd_loss(outputs.logits, teacher_logits.to(outputs.logits.dtype), labels,
                              d.temperature, d.alpha)
        mask = inputs["attention_mask"]
        if d.hidden_loss > 0:
            terms = [hidden_state_loss(self.projections[str(s)](s_hidden[str(s)]), t_hidden[str(s)], mask)
                     for s in self.layer_map]
            loss = loss + d.hidden_loss * torch.stack(terms).mean()
        if d.attention_loss > 0:
            terms = [attention_loss(s_attn[str(s)], t_attn[str(s)], mask) for s in self.layer_map]
            loss = loss + d.attention_loss * torch.stack(terms).mean()
        return (loss, outputs) if return_outputs else loss

    def _hook_paths(self) -> tuple[dict, dict]:
        """Module paths to hook for this step: none unless a feature loss is on."""
        empty = {"hidden": {}, "attention": {}}
        if not self.layer_paths or (self.distill.hidden_loss <= 0 and self.distill.attention_loss <= 0):
            return empty, empty
        s_root, t_root = self.layer_paths
        s_paths = {"hidden": {}, "attention": {}}
        t_paths = {"hidden": {}, "attention": {}}
        for s, t in self.layer_map.items():
            if self.distill.hidden_loss > 0:
                s_paths["hidden"][str(s)] = f"{s_root}.{s}"
                t_paths["hidden"][str(s)] = f"{t_root}.{t}"
            if self.distill.attention_loss > 0:
                s_paths["attention"][str(s)] = f"{s_root}.{s}.attention.self"
                t_paths["attention"][str(s)] = f"{t_root}.{t}.attention.self"
        return s_paths, t_paths


def training_arguments(output_dir: Path, epochs: float, learning_rate: float, batch_size: int,
                       seed: int, steps_per_epoch: int) -> TrainingArguments:
    """Trainer settings shared by fine-tuning and distillation: a checkpoint every epoch (so an
    interrupted run resumes), linear decay with 10% warm-up, no external loggers."""
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        warmup_ratio=0.1,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        save_strategy="epoch",
        save_total_limit=1,
        eval_strategy="no",
        logging_steps=max(1, steps_per_epoch // 4),
        report_to=[],
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,   # keep teacher_logits in the batch
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps a GPU copy
        disable_tqdm=False,
    )


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-*` folder under `output_dir`, for resuming, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(output_dir).is_dir():
        return None
    return get_last_checkpoint(str(output_dir))
