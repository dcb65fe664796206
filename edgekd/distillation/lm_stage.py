"""The distillation stage of a causal LM: teacher -> cached top-k predictions -> student.

Run folder (same contract as the classifier's stage):
  teacher/   the teacher as trained (save_pretrained + tokenizer), its held-out metrics and the
             reference the student is scored against (`lm_eval.REFERENCE_FILE`);
  cache/lm-topk/  the teacher's top-k log-probs on every training chunk (`lm_cache`), once;
  checkpoints/student/  the Trainer's per-epoch checkpoints (resume), removed when finished;
  student/   the student + tokenizer (+ vocab_map.json when trimmed) and metrics.json.
Folders are written under a temporary name and renamed when complete.

Under `torchrun --nproc_per_node N` every process runs this function: the main process writes
the teacher folder, the cache and the shrunk initial student first (`main_process_first`),
the others then find them complete; all train together; only the main process saves.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from pathlib import Path

from edgekd.data import TaskData, chunk_texts
from edgekd.files import read_json, replace_dir_atomic, staging_dir, write_json_atomic
from edgekd.recipe import Recipe

METRICS_FILE = "metrics.json"
CACHE_DIR = Path("cache") / "lm-topk"
SEQUENCE_KD_FILE = Path("cache") / "sequence-kd.jsonl"


def shuffled_chunks(tokenizer, data: TaskData, recipe: Recipe) -> list[str]:
    """The training split cut into chunks of data.max_length tokens, shuffled with the seed."""
    chunks = chunk_texts(tokenizer, [e.text for e in data.train], recipe.data.max_length)
    random.Random(recipe.distill.seed).shuffle(chunks)
    return chunks


def training_chunks(tokenizer, data: TaskData, recipe: Recipe) -> list[str]:
    """`shuffled_chunks` capped at data.max_train_chunks."""
    chunks = shuffled_chunks(tokenizer, data, recipe)
    return chunks[:recipe.data.max_train_chunks] if recipe.data.max_train_chunks else chunks


def with_chosen_layers(recipe: Recipe, teacher, tokenizer, texts: list[str], log=print):
    """(recipe whose student.from_teacher names its layers, the selection record or None): a
    `keep` is resolved on the teacher (`lm_layers.choose_layers`), explicit layers pass through."""

    from edgekd.distillation.lm_layers import choose_layers
    from edgekd.recipe import FromTeacherConfig

    cfg = recipe.student.from_teacher
    if cfg is None or cfg.layers is not None:
        return recipe, None
    started = time.perf_counter()
    selection = choose_layers(cfg, teacher, tokenizer, texts, recipe.data.max_length)
    selection["time_s"] = round(time.perf_counter() - started, 2)
    influence = selection.get("block_influence")
    log(f"student: keeps teacher layers {selection['layers']} ({selection['select']}"
        + (f", BI {min(influence):.3f}..{max(influence):.3f} on {selection['calibration_tokens']:,} "
           f"tokens" if influence else "") + ")")
    student = dataclasses.replace(recipe.student, from_teacher=FromTeacherConfig(layers=selection["layers"]))
    return dataclasses.replace(recipe, student=student), selection


def run_lm_distill(recipe: Recipe, data: TaskData, run_dir: Path, teacher_source: str, log=print):
    """Save and score the teacher, cache its predictions, distil and score the student."""
    import torch

    from edgekd.distillation.lm_cache import build_topk_cache
    from edgekd.distillation.lm_trainer import (CachedTopKDataset, LMDistillationTrainer, collate,
                                                lm_training_arguments)
    from edgekd.distillation.stage import DistillResult, initial_student, is_complete
    from edgekd.distillation.trainer import last_checkpoint
    from edgekd.models import load_tokenizer
    from edgekd.pruning.vocab import teacher_to_student
    from edgekd.tasks import get_task

    task, d = get_task(recipe.task), recipe.distill
    run_dir = Path(run_dir)
    teacher_dir, student_dir = run_dir / "teacher", run_dir / "student"
    torch.manual_seed(d.seed)
    tokenizer = load_tokenizer(teacher_source)
    chunks = shuffled_chunks(tokenizer, data, recipe)
    texts = chunks[:recipe.data.max_train_chunks] if recipe.data.max_train_chunks else chunks
    used = len(texts)                       # training chunks; the rest only shape the vocabulary
    checkpoints = run_dir / "checkpoints" / "student"
    extra_texts = d.sequence_kd.prompts if d.sequence_kd else 0
    args = lm_training_arguments(checkpoints, d, max(1, -(-(len(texts) + extra_texts) // d.batch_size)))
    skipped = []
    with args.main_process_first(local=False, desc="teacher"):
        if is_complete(teacher_dir):
            skipped.append("teacher")
            log("teacher: already complete, skipped")
        elif args.process_index == 0:
            save_teacher(recipe, data, teacher_source, teacher_dir, log)
    if is_complete(student_dir):
        log("student: already complete, skipped")
        return DistillResult(teacher_dir, student_dir, read_json(teacher_dir / METRICS_FILE),
                             read_json(student_dir / METRICS_FILE), skipped + ["student"])
    sequence_kd = None
    if d.sequence_kd is not None:
        with args.main_process_first(local=False, desc="sequence-level KD"):
            from edgekd.distillation.lm_sequence_kd import sequence_kd_texts

            continuations, sequence_kd = sequence_kd_texts(
                teacher_dir, chunks, used, d.sequence_kd, run_dir / SEQUENCE_KD_FILE, log)
        texts = texts + continuations
    with args.main_process_first(local=False, desc="student init"):
        teacher = task.load_model(str(teacher_dir), what="teacher").eval()
        t_tokenizer = load_tokenizer(str(teacher_dir))
        student_recipe, selection = with_chosen_layers(recipe, teacher, t_tokenizer, texts, log)
        # The vocabulary is trimmed to the whole training split (the training texts first, so
        # width pruning still calibrates on them): trimmed to the cached chunks alone, nearly
        # every held-out chunk held a dropped token and its words were split into pieces.
        student, s_tokenizer, vocab_map, shape = initial_student(
            student_recipe, task, teacher, t_tokenizer, data, texts + chunks[used:], run_dir, log)
        del teacher
    with args.main_process_first(local=False, desc="teacher predictions"):
        started = time.perf_counter()
        index = build_topk_cache(teacher_dir, texts, run_dir / CACHE_DIR, k=d.top_k,
                                 seq_len=recipe.data.max_length, temperature=d.temperature,
                                 progress="teacher predictions")
        log(f"teacher predictions: top-{d.top_k} on {index['sequences']} chunks "
            f"({sum(s['tokens'] for s in index['shards']):,} tokens) in {time.perf_counter() - started:.0f}s")
    reverse = teacher_to_student(vocab_map, teacher_vocab_size(teacher_dir)) if vocab_map is not None else None
    dataset = CachedTopKDataset(run_dir / CACHE_DIR, reverse)
    pad = s_tokenizer.pad_token_id if s_tokenizer.pad_token_id is not None else (s_tokenizer.eos_token_id or 0)
    on_policy = None
    if d.on_policy is not None:
        from edgekd.distillation.lm_on_policy import OnPolicy

        # GKD's on-policy steps score the student's samples with the live teacher
        on_policy = OnPolicy(task.load_model(str(teacher_dir), what="teacher"), d.on_policy, d,
                             vocab_map)
    trainer = LMDistillationTrainer(model=student, args=args, train_dataset=dataset,
                                    data_collator=lambda rows: collate(rows, pad), distill=d,
                                    cache_temperature=dataset.temperature, on_policy=on_policy)
    log(f"student: distilling ({student.config.num_hidden_layers} layers, {d.kd}, alpha {d.alpha}"
        + (f", on-policy lambda {d.on_policy.fraction}" if on_policy else "")
        + f") on {len(dataset)} chunks for {d.epochs:g} epochs, {args.world_size} process(es)")
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints))
    train_time = time.perf_counter() - start
    if args.process_index == 0:
        steps = max(1, result.global_step)
        extra = {"train_time_s": train_time, "epoch_time_s": train_time / d.epochs,
                 "steps": result.global_step, "step_time_s": train_time / steps,
                 "processes": args.world_size, "train_chunks": len(dataset),
                 **_logged_losses(trainer),
                 "distill": {"kd": d.kd, "alpha": d.alpha, "temperature": d.temperature,
                             "beta": d.beta, "skew": d.skew, "top_k": d.top_k},
                 **({"on_policy": {**dataclasses.asdict(d.on_policy),
                                   "steps": trainer.on_policy_steps,
                                   "teacher_calls": on_policy.teacher_calls}} if on_policy else {}),
                 **({"shrink": shape} if shape else {}),
                 **({"layer_selection": selection} if selection else {}),
                 **({"sequence_kd": sequence_kd} if sequence_kd else {})}
        save_student(trainer.model, s_tokenizer, vocab_map, teacher_dir, student_dir, extra, log)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    with args.main_process_first(local=False, desc="student save"):
        pass                                 # a barrier: the others wait for the main's save
    return DistillResult(teacher_dir, student_dir, read_json(teacher_dir / METRICS_FILE),
                         read_json(student_dir / METRICS_FILE), skipped)


def teacher_vocab_size(teacher_dir: Path) -> int:
    return int(read_json(Path(teacher_dir) / "config.json")["vocab_size"])


def _logged_losses(trainer) -> dict:
    """The first and the last training loss the Trainer logged (None when it logged none)."""
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    return {"first_train_loss": losses[0] if losses else None,
            "final_train_loss": losses[-1] if losses else None}


def save_teacher(recipe: Recipe, data: TaskData, source: str, final_dir: Path, log=print) -> dict:
    """Copy the teacher into the run folder (fp32 safetensors + tokenizer), score it on the
    held-out split and save its reference; atomically."""
    from edgekd.distillation.lm_eval import heldout_sets, teacher_reference
    from edgekd.models import count_parameters, load_tokenizer
    from edgekd.tasks import get_task

    d = recipe.distill
    model = get_task(recipe.task).load_model(source, what="teacher").eval()
    tokenizer = load_tokenizer(source)
    tmp = staging_dir(final_dir)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    chunks, prompts = heldout_sets(tokenizer, [e.text for e in data.test], recipe.data.max_length,
                                   d.eval_texts, d.eval_prompts, seed=d.seed)
    started = time.perf_counter()
    metrics = teacher_reference(model, tokenizer, chunks, prompts, tmp)
    metrics.update({"eval_time_s": time.perf_counter() - started, "source": source,
                    "fine_tuned": False, **model_facts(model, count_parameters(model))})
    log(f"teacher: held-out perplexity {metrics['perplexity']:.2f} on {metrics['eval_tokens']:,} tokens")
    write_json_atomic(tmp / METRICS_FILE, metrics)
    replace_dir_atomic(tmp, final_dir)
    return metrics


def model_facts(model, parameters: int) -> dict:
    """The shape of a causal LM, for metrics.json."""
    c = model.config
    return {"parameters": parameters, "num_hidden_layers": c.num_hidden_layers,
            "hidden_size": c.hidden_size, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": getattr(c, "num_key_value_heads", None),
            "intermediate_size": getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None),
            "vocab_size": c.vocab_size}


def save_student(model, tokenizer, vocab_map, teacher_dir: Path, final_dir: Path, extra: dict,
                 log=print) -> dict:
    """Score the student against the teacher's reference and save it (+ tokenizer, vocab map,
    metrics.json) into `final_dir`, atomically."""
    from edgekd.distillation.lm_eval import score_student
    from edgekd.distillation.stage import _write_vocab_map
    from edgekd.models import count_parameters

    model = model.eval()
    started = time.perf_counter()
    metrics = score_student(model, tokenizer, teacher_dir, vocab_map)
    metrics.update({"eval_time_s": time.perf_counter() - started,
                    **model_facts(model, count_parameters(model)), **extra})
    agreement = metrics["next_token_agreement"]
    log(f"student: held-out perplexity {metrics['perplexity']:.2f} (teacher "
        f"{metrics['teacher_perplexity_same_chunks']:.2f}), next-token agreement "
        f"{'-' if agreement is None else format(agreement, '.1%')}, greedy agreement "
        f"{metrics['greedy_agreement']:.1%}")
    tmp = staging_dir(final_dir)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _write_vocab_map(tmp, vocab_map)
    write_json_atomic(tmp / METRICS_FILE, metrics)
    replace_dir_atomic(tmp, final_dir)
    return metrics
