"""The stages after distillation: export (+ verify), bench, report — each over the run folder.

Every unit of work (one artifact, one artifact x target x threads) writes its own file and is
skipped when that file is complete, so a rerun resumes. A failed artifact is recorded as failed
(export.json / bench entry with status "failed") and the run goes on with the rest.
"""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgekd.console import console
from edgekd.errors import EdgekdError
from edgekd.files import read_json, write_json_atomic

# The teacher is exported once, at fp32 ONNX, as the runtime baseline next to PyTorch.
TEACHER_EXPORTS = (("onnx", "fp32"),)


def progress() -> Progress:
    """The progress display every stage uses."""
    return Progress(TextColumn("[bold cyan]{task.fields[stage]}[/]"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), console=console)


def export_jobs(recipe) -> list[tuple[str, str, str]]:
    """(role, format, precision) of every artifact the recipe asks for (the teacher's baseline
    exports are the task's choice)."""
    from edgekd.tasks import get_task

    task = get_task(recipe.task)
    jobs = [("student", fmt, prec) for fmt, prec in recipe.export.jobs(task)]
    jobs += [("teacher", fmt, prec) for fmt, prec in getattr(task, "TEACHER_EXPORTS", TEACHER_EXPORTS)]
    return jobs


def export_seq_len(recipe) -> int:
    """The sequence length artifacts are exported for (a causal LM: its context)."""
    from edgekd.tasks import get_task

    task = get_task(recipe.task)
    return task.export_seq_len(recipe) if hasattr(task, "export_seq_len") else recipe.seq_len


def role_inputs(recipe, data, run_dir: Path, role: str) -> dict:
    """Eval inputs, labels and calibration examples encoded with `role`'s own tokenizer (a
    student may have a trimmed vocabulary of its own)."""
    from edgekd.data import encode
    from edgekd.models import load_tokenizer
    from edgekd.tasks import get_task

    tokenizer = load_tokenizer(str(run_dir / role))
    task = get_task(recipe.task)
    if hasattr(task, "export_inputs"):
        return task.export_inputs(tokenizer, data, recipe, run_dir / role)
    calibration_texts = [e.text for e in data.train[:recipe.export.calibration_samples]]
    return {"eval_inputs": encode(tokenizer, [e.text for e in data.test], recipe.seq_len),
            "eval_labels": [e.label for e in data.test],
            "calibration": encode(tokenizer, calibration_texts, recipe.seq_len)}


def export_stage(recipe, data, run_dir: Path) -> list[dict]:
    """Export and verify every configured artifact; returns their export.json records. The
    PyTorch reference outputs are computed once per role (and cached under cache/)."""
    from edgekd.exporters import EXPORT_FILE, export_artifact, failed_record
    from edgekd.exporters.verify import ReferenceOutputs
    from edgekd.tasks import get_task

    from edgekd.data import save_inputs

    task = get_task(recipe.task)
    references = ReferenceOutputs(run_dir / "cache")
    inputs: dict[str, dict] = {}
    records = []
    jobs = export_jobs(recipe)
    if getattr(task, "GENERATIVE", False):
        # The PyTorch models are benchmarked on the same held-out prompts as the artifacts.
        for role in ("teacher", "student"):
            inputs[role] = role_inputs(recipe, data, run_dir, role)
            save_inputs(run_dir / role, inputs[role]["eval_inputs"])
    with progress() as bar:
        progress_task = bar.add_task("", total=len(jobs), stage="export")
        for role, fmt, precision in jobs:
            name = f"{role}-{fmt}-{precision}"
            bar.update(progress_task, description=name)
            out_dir = run_dir / "exports" / name
            if role not in inputs:
                inputs[role] = role_inputs(recipe, data, run_dir, role)
            try:
                limits = task.thresholds(precision, recipe.export) if hasattr(task, "thresholds") else None
                record = export_artifact(run_dir / role, fmt, precision, out_dir, role=role,
                                         seq_len=export_seq_len(recipe), task=task,
                                         references=references, limits=limits,
                                         options=recipe.export.options(precision), **inputs[role])
            except EdgekdError as exc:
                # The run goes on; the failure is recorded where the report will find it.
                record = failed_record(name, role, fmt, precision, str(exc))
                write_json_atomic(out_dir / EXPORT_FILE, record)
            records.append(record)
            status = "[green]ok[/]" if record["status"] == "ok" else f"[red]FAILED[/] {record['error']}"
            acc = record.get("accuracy")
            ppl = (record.get("metrics") or {}).get("perplexity")
            console.print(f"  {name}: {status}" + (f", accuracy {acc:.4f}" if acc is not None else "")
                          + (f", perplexity {ppl:.2f}" if ppl is not None else ""))
            bar.advance(progress_task)
    return records


def bench_jobs(recipe, run_dir: Path) -> list[tuple[Path, str, int]]:
    """(artifact, target, threads) of every measurement: the PyTorch teacher and student and
    every ok export, on every target, at the recipe's thread counts (else the target's own)."""
    from edgekd.targets.profiles import get_target

    artifacts = [run_dir / "teacher", run_dir / "student"]
    for folder in sorted((run_dir / "exports").glob("*")):
        if (folder / "export.json").is_file() and read_json(folder / "export.json").get("status") == "ok":
            artifacts.append(folder)
    jobs = []
    for target in recipe.bench.targets:
        threads = recipe.bench.threads or get_target(target).threads
        jobs += [(a, target, n) for n in threads for a in artifacts]
    return jobs


def bench_stage(recipe, run_dir: Path) -> list[dict]:
    """Benchmark every job of `bench_jobs`, `bench.repeats` fresh processes each, round-robin
    (repeat 1 of every job, then repeat 2, ...) so drift falls on all artifacts alike. Each
    result is its own file under bench/<target>/, named by every setting that changes it and
    rewritten after every repeat; a rerun skips complete files (ok, with enough repeats) and
    adds the missing repeats to the others. A job that fails is recorded as failed and not
    tried again in this run."""
    from edgekd.benchmarks.bench import entry_file_name, failed_entry, prepare, resolve_artifact
    from edgekd.targets.profiles import target_slug

    b = recipe.bench
    generate = {"prompt_lengths": sorted(set(b.prompt_lengths)), "new_tokens": b.new_tokens}
    jobs = bench_jobs(recipe, run_dir)
    entries: list[dict | None] = []     # what the bench/ files hold now, one per job
    for artifact, target, threads in jobs:
        try:
            art = resolve_artifact(artifact)
            name = art.name
        except EdgekdError:
            art = name = None     # measured below, where the error is recorded
        path = None if name is None else run_dir / "bench" / target_slug(target) / entry_file_name(
            {"name": name, "threads": threads, "batch_size": b.batch_size, "seq_len": recipe.seq_len,
             "generation": generate if art.generative else None})
        entries.append(read_json(path) if path is not None and path.is_file() else None)
    todo = sum(max(0, b.repeats - len(e.get("repeats") or [])) if e and e.get("status") == "ok"
               else b.repeats for e in entries)
    measurements: dict[int, object] = {}
    with progress() as bar:
        task = bar.add_task("", total=todo, stage="bench")
        for round_no in range(1, b.repeats + 1):
            for i, (artifact, target, threads) in enumerate(jobs):
                entry = entries[i]
                if entry and (entry.get("status") == "failed" and i in measurements or
                              entry.get("status") == "ok" and len(entry.get("repeats") or []) >= round_no):
                    continue
                bar.update(task, description=f"{artifact.name} on {target}, {threads} thread(s), "
                                             f"repeat {round_no}/{b.repeats}")
                try:
                    if i not in measurements:
                        measurements[i] = prepare(artifact, target, threads=threads,
                                                  batch_size=b.batch_size, seq_len=recipe.seq_len,
                                                  warmup=b.warmup, min_iterations=b.min_iterations,
                                                  min_time_s=b.min_time_s, energy=b.energy,
                                                  generate=generate)
                    m = measurements[i]
                    entry = m.entry(m.run_once(), entry)
                except EdgekdError as exc:
                    console.print(f"  [red]{artifact.name} on {target}: {exc}[/]")
                    entry = failed_entry(artifact, target, threads, str(exc),
                                         batch_size=b.batch_size, seq_len=recipe.seq_len)
                    measurements[i] = None      # failed in this run: no further repeats
                    bar.advance(task, max(0, b.repeats - round_no))
                folder = run_dir / "bench" / target_slug(target)
                write_json_atomic(folder / entry_file_name(entry), entry)
                entries[i] = entry
                bar.advance(task)
    return entries


def report_stage(run_dir: Path, timings: dict) -> dict:
    """Build report.json/md/html from the run folder; the stage timings ride along."""
    from edgekd.report.build import build_report, write_report

    report = build_report(run_dir)
    report["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    write_report(run_dir, report)
    return report
