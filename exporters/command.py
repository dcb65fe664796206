"""`edgekd export MODEL_DIR --format F --precision P [--data D] --out DIR`.

With --data (a recipe or data path), the test split is used for verification (accuracy is
scored) and the train split for int8-static calibration; without it, verification runs on
generated token inputs and accuracy is null.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekd.errors import EdgekdError

DEFAULT_SEQ_LEN = 128


def export_command(args: argparse.Namespace) -> int:
    """Handler of `edgekd export`: exit 0 when verified, 1 when the artifact failed verification."""
    from edgekd.checks import check_output_dir, check_safetensors
    from edgekd.console import quiet_libraries
    from edgekd.exporters import check_supported, export_artifact
    from edgekd.exporters.verify import check_model_dir
    from edgekd.models import check_weights_fit, load_config
    from edgekd.tasks import task_for_model

    quiet_libraries()  # converter imports log warnings that would bury the one error line
    # Every check that needs no model comes first: nothing is converted, nothing written.
    check_output_dir(args.out, "--out")
    options = export_options(args)
    model_dir = check_model_dir(args.model_dir)
    for weights in sorted(model_dir.glob("*.safetensors")):
        check_safetensors(weights)
    config = load_config(str(model_dir))
    task = task_for_model(config, getattr(args, "task", None), str(model_dir))
    if args.calibration_samples < 1:
        raise EdgekdError("--calibration-samples must be >= 1")
    if args.seq_len is not None and args.seq_len < 2:
        raise EdgekdError("--seq-len must be >= 2")
    # Refuse an impossible pair before loading data or models (calibration checked below).
    check_supported(args.format, args.precision, calibration=True, task=task, options=options)
    if options.get("int4_data_aware") and not args.data:
        raise EdgekdError("--int4-data-aware needs calibration text: pass --data RECIPE")
    if args.precision == "int8-static" and not args.data:
        raise EdgekdError(f"{args.format} int8-static needs calibration examples: pass --data "
                          "(a recipe or data path)")
    seq_len = args.seq_len or DEFAULT_SEQ_LEN
    eval_inputs = labels = calibration = None
    if args.data:
        eval_inputs, labels, calibration, seq_len = task_inputs(
            model_dir, args.data, args.seq_len, args.calibration_samples, task,
            data_aware=bool(options.get("int4_data_aware")))
    if seq_len < 2:
        raise EdgekdError("--seq-len must be >= 2")
    check_weights_fit(model_dir, config, f"{model_dir}:")
    positions = getattr(config, "max_position_embeddings", None)
    if positions and seq_len > positions:
        raise EdgekdError(f"sequence length {seq_len} is longer than the model's {positions} "
                          "positions (--seq-len, or the recipe's data.max_length)")
    record = export_artifact(model_dir, args.format, args.precision, Path(args.out),
                             role=_role(model_dir), seq_len=seq_len, eval_inputs=eval_inputs,
                             eval_labels=labels, calibration=calibration, task=task,
                             options=options)
    print_summary([record], Path(args.out))
    if record["status"] != "ok":
        print(f"edgekd export: {record['name']} failed verification: {record['error']} "
              f"(kept for inspection in {args.out})", file=sys.stderr)
        return 1
    return 0


def export_options(args: argparse.Namespace) -> dict:
    """The exporter options of the command line (`--int4-group-size`, `--int4-ratio`,
    `--int4-data-aware`: the recipe's export.int4_*), checked."""
    from edgekd.recipe import check_int4_group_size, check_int4_ratio, int4_options

    options = int4_options(getattr(args, "int4_group_size", None), getattr(args, "int4_ratio", None),
                           getattr(args, "int4_data_aware", False))
    if options and args.precision != "int4":
        flag = "--" + next(iter(options)).replace("_", "-")
        raise EdgekdError(f"{flag} applies to --precision int4 only")
    try:
        check_int4_group_size(options.get("int4_group_size"), "--int4-group-size")
        check_int4_ratio(options.get("int4_ratio"), "--int4-ratio")
    except ValueError as exc:
        raise EdgekdError(str(exc)) from None
    return options


def _role(model_dir: Path) -> str | None:
    """A run folder's `teacher/` or `student/` keeps its role; any other model has none."""
    name = model_dir.resolve().name
    return name if name in ("teacher", "student") else None


def task_inputs(model_dir: Path, data: str, seq_len: int | None, calibration_samples: int,
                task=None, data_aware: bool = False):
    """Encode the task data for `model_dir`: (test inputs, test labels in the model's label ids,
    calibration inputs from the train split, sequence length). `data_aware`: a recipe-built
    task's calibration text is wanted (--int4-data-aware)."""
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    from edgekd.data import encode, load_data_argument
    from edgekd.tasks import get_task

    task = task or get_task()
    if hasattr(task, "export_inputs"):
        return _recipe_inputs(model_dir, data, seq_len, task, data_aware)
    data_split, seq_len = load_data_argument(data, seq_len)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"{model_dir} has no usable tokenizer, needed to encode --data: "
                          f"{str(exc).splitlines()[0]}") from None
    label_ids = task.label_ids(AutoConfig.from_pretrained(model_dir), data_split.labels)
    test = encode(tokenizer, [e.text for e in data_split.test], seq_len)
    labels = np.array([label_ids[e.label] for e in data_split.test], dtype=np.int64)
    pool = data_split.train or data_split.validation
    calibration = encode(tokenizer, [e.text for e in pool[:calibration_samples]], seq_len)
    return test, labels, calibration, seq_len


def _recipe_inputs(model_dir: Path, data: str, seq_len: int | None, task, data_aware: bool):
    """A task that builds its export inputs from a recipe (a causal LM: held-out prompts of the
    benchmark's lengths, held-out chunks for perplexity): (eval inputs, eval labels, calibration,
    the context to export: --seq-len, else the task's for the recipe)."""
    from edgekd.models import load_tokenizer
    from edgekd.recipe import load_recipe
    from edgekd.stages import export_seq_len

    if not data.endswith((".yaml", ".yml")):
        raise EdgekdError(f"a {task.TASK} model's --data must be a recipe (its prompt lengths and "
                          "held-out settings say what to verify on), not a data path")
    recipe = load_recipe(data, ["export.int4_data_aware=true"] if data_aware else [])
    inputs = task.export_inputs(load_tokenizer(str(model_dir)), task.load_data(recipe.data), recipe)
    return (inputs["eval_inputs"], inputs["eval_labels"], inputs["calibration"],
            seq_len or export_seq_len(recipe))


def print_summary(records: list[dict], where: Path | None = None) -> None:
    """A short rich table: artifact, status, size, parity (a classifier's max |diff| and top-1
    agreement, a causal LM's greedy-token agreement), accuracy or perplexity, export time."""
    from rich import box
    from rich.table import Table

    from edgekd.console import make_console

    table = Table(title="export", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("artifact", no_wrap=True)
    for column in ("status", "MB", "max|diff|", "agree", "acc / ppl", "time s"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in records:
        parity = r.get("parity") or {}
        agreement = parity.get("top1_agreement", parity.get("token_agreement"))
        perplexity = (r.get("metrics") or {}).get("perplexity")
        quality = (f"{r['accuracy']:.0%}" if r.get("accuracy") is not None
                   else f"{perplexity:.2f}" if perplexity is not None else "-")
        table.add_row(
            r["name"], "[green]ok[/]" if r["status"] == "ok" else "[red]failed[/]",
            f"{r['size_bytes'] / 1e6:.1f}",
            f"{parity['max_abs_diff']:.1e}" if parity.get("max_abs_diff") is not None else "-",
            f"{agreement:.0%}" if agreement is not None else "-", quality,
            f"{r['export_time_s']:.1f}")
    console = make_console()
    console.print(table)
    if where is not None:
        console.print(f"written to {where}", soft_wrap=True)
