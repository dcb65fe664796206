"""How much does distillation cost over plain training? One epoch each, side by side.

    python scripts/distill_speed.py RUN_DIR [--repeats 2] [--max-steps N]

Uses a finished run folder (its fine-tuned teacher, cached teacher predictions and recipe):
builds the same student twice and trains it for one epoch (a) with the distillation loss on
cached teacher logits and (b) with plain cross-entropy fine-tuning, same data, batch size and
settings, alternating the order over `--repeats` rounds so machine noise hits both alike.
Prints the seconds of each and the ratio (the goal: distillation at most 1.2x plain training).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def one_epoch(recipe, data, run_dir: Path, distill: bool, max_steps: int | None) -> float:
    """Seconds for one training epoch of a fresh student (distillation or plain fine-tuning)."""
    import tempfile

    import numpy as np
    from transformers import Trainer

    from edgekd.distillation.dataset import EncodedDataset, collate, training_examples
    from edgekd.distillation.trainer import DistillationTrainer, training_arguments
    from edgekd.models import build_student, load_tokenizer
    from edgekd.tasks import get_task

    teacher_dir = run_dir / "teacher"
    tokenizer = load_tokenizer(str(teacher_dir))
    teacher = get_task(recipe.task).load_model(str(teacher_dir), data.labels, "teacher")
    student = build_student(recipe.student, teacher, data.labels)
    texts, labels = training_examples(data)
    dataset = EncodedDataset(tokenizer, texts, labels, recipe.data.max_length)
    if distill:
        with np.load(run_dir / "cache" / "teacher_logits.npz") as cache:
            dataset.teacher_logits = cache["logits"]
    d = recipe.distill
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(Path(out), 1, d.learning_rate, d.batch_size, d.seed,
                                  -(-len(dataset) // d.batch_size))
        args.save_strategy = "no"
        args.disable_tqdm = True
        if max_steps:
            args.max_steps = max_steps
        common = dict(model=student, args=args, train_dataset=dataset,
                      data_collator=lambda rows: collate(rows, tokenizer.pad_token_id or 0))
        trainer = DistillationTrainer(**common, distill=d) if distill else Trainer(**common)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from edgekd.data import load_task_data
    from edgekd.recipe import load_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="cap each 'epoch' at N steps")
    args = parser.parse_args(argv)
    recipe = load_recipe(args.run_dir / "recipe.yaml")
    data = load_task_data(recipe.data)
    times = {"distill (cached teacher)": [], "plain fine-tuning": []}
    for round_ in range(args.repeats):
        order = [True, False] if round_ % 2 == 0 else [False, True]
        for distill in order:
            key = "distill (cached teacher)" if distill else "plain fine-tuning"
            times[key].append(one_epoch(recipe, data, args.run_dir, distill, args.max_steps))
            print(f"round {round_ + 1}: {key}: {times[key][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"examples per epoch: {len(data.train) + len(data.unlabeled)}, batch {recipe.distill.batch_size}")
    for key, value in med.items():
        print(f"{key:28s} median {value:7.1f} s  (runs: {', '.join(f'{t:.1f}' for t in times[key])})")
    ratio = med["distill (cached teacher)"] / med["plain fine-tuning"]
    print(f"distill / plain: {ratio:.3f}x  (goal <= 1.2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
