"""The distillation stage: teacher (fine-tuned if asked) -> cached predictions -> student.

Writes `teacher/` and `student/` into the run folder (save_pretrained + tokenizer + inputs.npz +
metrics.json). Each folder is built under a temporary name and renamed when complete, so a
folder that exists is finished and is skipped on a rerun; the Trainer's per-epoch checkpoints
under `checkpoints/` let an interrupted training resume.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgekd.data import TaskData, encode, save_inputs
from edgekd.files import read_json, replace_dir_atomic, staging_dir, write_json_atomic
from edgekd.recipe import Recipe

METRICS_FILE = "metrics.json"


@dataclass
class DistillResult:
    teacher_dir: Path
    student_dir: Path
    teacher_metrics: dict
    student_metrics: dict
    skipped: list[str]


def is_complete(model_dir: Path) -> bool:
    """A model folder is complete once its metrics.json exists (written before the rename)."""
    return (Path(model_dir) / METRICS_FILE).is_file()


def run_distill(recipe: Recipe, data: TaskData, run_dir: Path, teacher_source: str,
                log=print) -> DistillResult:
    """Fine-tune (if asked) and evaluate the teacher, then distil and evaluate the student."""
    import torch

    from edgekd.models import load_tokenizer
    from edgekd.tasks import get_task

    task = get_task(recipe.task)
    if getattr(task, "DISTILL_STAGE", None):   # a task with its own stage ("module:function")
        module, _, function = task.DISTILL_STAGE.partition(":")
        return getattr(importlib.import_module(module), function)(recipe, data, run_dir,
                                                                  teacher_source, log)
    run_dir = Path(run_dir)
    teacher_dir, student_dir = run_dir / "teacher", run_dir / "student"
    skipped = []
    torch.manual_seed(recipe.distill.seed)
    if is_complete(teacher_dir):
        skipped.append("teacher")
        log("teacher: already complete, skipped")
    else:
        tokenizer = load_tokenizer(teacher_source)
        teacher = task.load_model(teacher_source, data.labels, "teacher")
        train_time = 0.0
        if recipe.teacher.fine_tune is not None:
            log(f"teacher: fine-tuning on {len(data.train)} examples")
            train_time = fine_tune(teacher, tokenizer, data, recipe, run_dir / "checkpoints" / "teacher")
        save_model(teacher, tokenizer, data, recipe, teacher_dir, {"train_time_s": train_time,
                   "fine_tuned": recipe.teacher.fine_tune is not None, "source": teacher_source}, log)
    if is_complete(student_dir):
        skipped.append("student")
        log("student: already complete, skipped")
    else:
        distill_student(recipe, data, run_dir, log)
    return DistillResult(teacher_dir, student_dir, read_json(teacher_dir / METRICS_FILE),
                         read_json(student_dir / METRICS_FILE), skipped)


def fine_tune(model, tokenizer, data: TaskData, recipe: Recipe, checkpoints: Path) -> float:
    """Plain fine-tuning (the model's own cross-entropy) on the train split; returns seconds."""
    from transformers import Trainer

    from edgekd.distillation.dataset import EncodedDataset, collate
    from edgekd.distillation.trainer import last_checkpoint, training_arguments

    ft = recipe.teacher.fine_tune
    dataset = EncodedDataset(tokenizer, [e.text for e in data.train], [e.label for e in data.train],
                             recipe.data.max_length)
    args = training_arguments(checkpoints, ft.epochs, ft.learning_rate, ft.batch_size,
                              recipe.distill.seed, -(-len(dataset) // ft.batch_size))
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=lambda rows: collate(rows, tokenizer.pad_token_id or 0))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints))
    return time.perf_counter() - start


def distill_student(recipe: Recipe, data: TaskData, run_dir: Path, log=print) -> dict:
    """Build the student from the saved teacher and train it against the teacher's soft labels."""
    from edgekd.distillation.dataset import EncodedDataset, collate, training_examples
    from edgekd.distillation.features import parse_layer_map
    from edgekd.distillation.teacher_cache import cached_teacher_logits, fingerprint, predict_logits
    from edgekd.distillation.trainer import DistillationTrainer, last_checkpoint, training_arguments
    from edgekd.models import encoder_layers_path, load_tokenizer
    from edgekd.tasks import get_task

    task = get_task(recipe.task)
    d = recipe.distill
    teacher_dir = run_dir / "teacher"
    feature_losses = d.hidden_loss > 0 or d.attention_loss > 0
    tokenizer = load_tokenizer(str(teacher_dir))   # the teacher's; the student may get its own
    # The attention loss reads attention probabilities, which only the eager kernel returns.
    teacher = task.load_model(str(teacher_dir), data.labels, "teacher",
                              attn_implementation="eager" if d.attention_loss > 0 else None)
    texts, labels = training_examples(data)
    teacher_data = EncodedDataset(tokenizer, texts, labels, recipe.data.max_length)
    teacher_logits = None
    if d.cache_teacher:
        key = fingerprint(teacher_dir, texts, recipe.data.max_length)
        teacher_logits, hit = cached_teacher_logits(
            run_dir / "cache" / "teacher_logits.npz", key,
            lambda: predict_logits(teacher, teacher_data, 64, tokenizer.pad_token_id or 0,
                                   progress="teacher predictions"))
        log(f"teacher predictions: {'from cache' if hit else 'computed'} for {len(texts)} examples")
    student, tokenizer, vocab_map, shape = initial_student(recipe, task, teacher, tokenizer,
                                                           data, texts, run_dir, log)
    dataset = EncodedDataset(tokenizer, texts, labels, recipe.data.max_length)
    dataset.teacher_logits = teacher_logits
    pad = tokenizer.pad_token_id or 0
    if d.attention_loss > 0:
        student.config._attn_implementation = "eager"
    layer_map = parse_layer_map(d.layer_map, student.config.num_hidden_layers,
                                teacher.config.num_hidden_layers) if feature_losses else {}
    checkpoints = run_dir / "checkpoints" / "student"
    args = training_arguments(checkpoints, d.epochs, d.learning_rate, d.batch_size, d.seed,
                              -(-len(dataset) // d.batch_size))
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=dataset,
        data_collator=lambda rows: collate(rows, pad), distill=d,
        teacher=teacher if (feature_losses or not d.cache_teacher) else None,
        layer_map=layer_map, teacher_ids=vocab_map,
        layer_paths=(encoder_layers_path(student), encoder_layers_path(teacher)) if feature_losses else None)
    log(f"student: distilling ({student.config.num_hidden_layers} layers) for {d.epochs:g} epochs")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints))
    train_time = time.perf_counter() - start
    extra = {"train_time_s": train_time, "epoch_time_s": train_time / d.epochs,
             "teacher_forward_examples_in_loop": trainer.teacher_forward_examples,
             "distill": {"temperature": d.temperature, "alpha": d.alpha, "hidden_loss": d.hidden_loss,
                         "attention_loss": d.attention_loss, "layer_map": layer_map or None},
             **({"shrink": shape} if shape else {})}
    metrics = save_model(student, tokenizer, data, recipe, run_dir / "student", extra, log,
                         vocab_map=vocab_map)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # finished: resume state no longer needed
    return metrics


def initial_student(recipe: Recipe, task, teacher, tokenizer, data: TaskData, texts: list[str],
                    run_dir: Path, log=print):
    """The student before distillation: built from the teacher, then (if the recipe asks) width-
    pruned and vocabulary-trimmed. A shrunk student is saved under checkpoints/student-init, so
    an interrupted training resumes on exactly the same initial model.

    Returns (model, tokenizer, student-to-teacher id map or None, record of the shrinking)."""
    from edgekd.models import build_student, load_tokenizer
    from edgekd.pruning.student import shrink_student
    from edgekd.pruning.vocab import load_vocab_map

    cfg = recipe.student
    if cfg.width is None and cfg.vocabulary is None:
        return build_student(cfg, teacher, data.labels, task), tokenizer, None, None
    init = run_dir / "checkpoints" / "student-init"
    if (init / METRICS_FILE).is_file():
        log("student: shrunk initial model from checkpoints/student-init")
        return (task.load_model(str(init), data.labels, "student"), load_tokenizer(str(init)),
                load_vocab_map(init), read_json(init / METRICS_FILE))
    student = build_student(cfg, teacher, data.labels, task)
    shrunk = shrink_student(student, tokenizer, cfg, texts, recipe.data.max_length, log)
    tmp = staging_dir(init)
    shrunk.model.save_pretrained(tmp)
    shrunk.tokenizer.save_pretrained(tmp)
    _write_vocab_map(tmp, shrunk.student_to_teacher)
    write_json_atomic(tmp / METRICS_FILE, shrunk.record)
    replace_dir_atomic(tmp, init)
    return shrunk.model, shrunk.tokenizer, shrunk.student_to_teacher, shrunk.record


def _write_vocab_map(folder: Path, student_to_teacher) -> None:
    from edgekd.pruning.vocab import VOCAB_MAP_FILE

    if student_to_teacher is not None:
        write_json_atomic(Path(folder) / VOCAB_MAP_FILE,
                          {"student_to_teacher": [int(i) for i in student_to_teacher]})


def save_model(model, tokenizer, data: TaskData, recipe: Recipe, final_dir: Path, extra: dict,
               log=print, vocab_map=None) -> dict:
    """Evaluate on the test split and save model + tokenizer + inputs.npz + metrics.json (and
    the vocabulary map of a trimmed student) into `final_dir`, atomically."""
    from edgekd.evaluation import evaluate_model
    from edgekd.models import count_parameters

    name = Path(final_dir).name
    metrics = evaluate_model(model, tokenizer, data.test, recipe.data.max_length,
                             progress=f"{name}: evaluating")
    metrics.update({"parameters": count_parameters(model), "labels": data.labels,
                    "num_hidden_layers": model.config.num_hidden_layers,
                    "hidden_size": model.config.hidden_size,
                    "num_attention_heads": model.config.num_attention_heads,
                    "intermediate_size": getattr(model.config, "intermediate_size", None),
                    "vocab_size": model.config.vocab_size, **extra})
    log(f"{name}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
    tmp = staging_dir(final_dir)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    encoded = encode(tokenizer, [e.text for e in data.test], recipe.seq_len)
    save_inputs(tmp, encoded, [e.label for e in data.test])
    _write_vocab_map(tmp, vocab_map)
    write_json_atomic(tmp / METRICS_FILE, metrics)
    replace_dir_atomic(tmp, final_dir)
    return metrics
