"""The host side of a benchmark: find what an artifact is, run it on a target, build the entry.

`bench_artifact` is what the pipeline and `edgekd bench` call. An artifact is a file (`.onnx`,
`.xml`, `.tflite`), an export folder (`export.json` names the file and gives name, role,
precision, parity and accuracy), or a Hugging Face model folder (the PyTorch baseline). Its real
tokenized inputs (`inputs.npz`) must lie in the same folder (docs/contracts.md); edgekd never
benchmarks made-up inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.benchmarks import runtimes
from edgekd.benchmarks.contracts import BenchEntry, ContractError, ExportRecord, Report, RunnerResult
from edgekd.checks import check_artifact_files
from edgekd.errors import EdgekdError

INPUTS_FILE = "inputs.npz"


@dataclass
class Artifact:
    """An artifact resolved on the host: what to run, with which inputs, and what it is."""

    path: Path                  # the file, or the model folder for PyTorch
    inputs: Path
    name: str
    role: str | None
    format: str
    precision: str | None
    export: dict | None = None  # export.json, when there is one
    accuracy: float | None = None
    metrics: dict | None = None  # quality metrics (export.json's, or the model's metrics.json)
    generative: bool = False    # a causal LM: measured with the runner's generate scenario


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"{what} {path} is unreadable or not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EdgekdError(f"{what} {path} must hold a JSON object")
    return data


def _from_export(folder: Path, data: dict) -> Artifact:
    where = folder / "export.json"
    try:
        record = ExportRecord.from_dict(data, str(where))
    except ContractError as exc:
        raise EdgekdError(f"{exc} (docs/contracts.md)") from None
    if record.status != "ok":
        raise EdgekdError(f"{folder}: the export failed ({record.error or 'no reason given'}); "
                          "a failed export is never benchmarked")
    if not record.artifact:
        raise EdgekdError(f"{where}: needs 'artifact' (docs/contracts.md)")
    path = folder / record.artifact
    if not path.exists():
        raise EdgekdError(f"{where} names artifact '{record.artifact}', which is missing")
    return Artifact(path, folder / INPUTS_FILE, record.name or folder.name, record.role,
                    record.format, record.precision, data, record.accuracy, record.metrics,
                    _generative_task(record.task))


def _generative_task(task_name: str | None) -> bool:
    """Whether `task_name` names a task whose artifacts generate text (a causal LM)."""
    from edgekd.tasks import available_tasks, get_task

    return bool(task_name in available_tasks() and getattr(get_task(task_name), "GENERATIVE", False))


def _folder_task(path: Path) -> str:
    """The task of a Hugging Face model folder, from the architecture its config.json names."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "text-classification"
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    causal = any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    return "causal-lm" if causal else "text-classification"


def resolve_artifact(path: str | Path) -> Artifact:
    """What `path` is (export folder, model folder, or artifact file) and its inputs file."""
    path = Path(path)
    if not path.exists():
        raise EdgekdError(f"artifact not found: {path}")
    if path.is_dir() and (path / "export.json").is_file():
        art = _from_export(path, _read_json(path / "export.json", "export file"))
    elif path.is_dir() and (path / "config.json").is_file():
        role = path.name if path.name in ("teacher", "student") else None
        metrics = None
        if (path / "metrics.json").is_file():
            metrics = _read_json(path / "metrics.json", "metrics file")
        art = Artifact(path, path / INPUTS_FILE, f"{role or path.name}-pytorch-fp32", role,
                       "pytorch", "fp32", None, (metrics or {}).get("accuracy"), metrics,
                       _generative_task(_folder_task(path)))
    elif path.is_dir():
        raise EdgekdError(f"{path} is a folder without export.json or config.json: not an artifact")
    else:
        try:
            fmt = runtimes.format_of(str(path))
        except runtimes.ArtifactError as exc:
            raise EdgekdError(f"{path}: {exc}") from None
        export_file = path.parent / "export.json"
        export = _read_json(export_file, "export file") if export_file.is_file() else None
        if export and Path(export.get("artifact", "")).name == path.name:
            art = _from_export(path.parent, export)
        else:
            art = Artifact(path, path.parent / INPUTS_FILE, path.stem, None, fmt, None)
    if art.path.is_file() and art.path.stat().st_size == 0:
        raise EdgekdError(f"artifact {art.path} is empty (corrupt or an interrupted write)")
    if not art.inputs.is_file():
        raise EdgekdError(f"no {INPUTS_FILE} next to {art.path}: the runner needs real tokenized "
                          f"examples there (edgekd export writes them; see docs/contracts.md)")
    check_artifact_files(art.path, art.format)  # named here, not as a runtime's C++ trace later
    return art


def runner_options(*, precision: str | None, threads: int, batch_size: int, seq_len: int | None,
                   warmup: int, min_iterations: int, min_time_s: float, energy: str,
                   power: dict, generate: dict | None = None) -> dict:
    """The runner's options. Warm-up runs at least `warmup` calls and a tenth of the measured
    time (at most 1 s); idle power is measured for 1 s only for a real meter. `generate`
    ({"prompt_lengths": [...], "new_tokens": n}) selects the generate scenario (causal LMs)."""
    from edgekd.benchmarks.energy import METERS

    if energy not in ("auto", "none", *METERS):
        raise EdgekdError(f"unknown energy meter '{energy}' (choose: auto, none, {', '.join(METERS)})")
    options = {"precision": precision or "fp32", "threads": threads, "batch_size": batch_size,
               "seq_len": seq_len, "warmup": warmup, "warmup_time": min(1.0, 0.1 * min_time_s),
               "min_iterations": min_iterations, "min_time": min_time_s, "energy": energy,
               "idle_time": 0.0 if energy.split(":")[0] in ("none", "estimate") else 1.0,
               "power_profile": json.dumps(power) if power else None}
    if generate:
        options.update(scenario="generate", seq_len=None, warmup=min(warmup, 2),
                       warmup_time=0.0, min_iterations=min(min_iterations, GENERATIONS),
                       prompt_lengths=",".join(str(n) for n in generate["prompt_lengths"]),
                       new_tokens=generate["new_tokens"])
    return options


# Generations per prompt length in one repeat (at most): each gives one TTFT sample and
# `new_tokens` - 1 TPOT samples. TTFT is gated too, so it needs more than a handful.
GENERATIONS = 6
DEFAULT_GENERATE = {"prompt_lengths": [64, 256], "new_tokens": 32}


def check_batch_size(art: Artifact, batch_size: int) -> None:
    """Refuse, before measuring, a batch size a static-shape artifact cannot run."""
    fixed = (art.export or {}).get("batch_size")
    if fixed and batch_size != fixed:
        raise EdgekdError(f"{art.name} was exported for batch {fixed} (static shapes, e.g. "
                          f"litert-torch's TFLite files) and cannot run batch {batch_size}: "
                          f"benchmark it at batch size {fixed}")


@dataclass
class Measurement:
    """One artifact on one target with one set of settings, checked and ready to be measured
    any number of times (each `run_once` is one fresh runner process: one repeat)."""

    art: Artifact
    target: Any
    options: dict
    timeout_s: float

    def run_once(self) -> RunnerResult:
        """One runner invocation on the target; its validated result."""
        tgt, art = self.target, self.art
        try:
            result = RunnerResult.from_dict(
                tgt.run_runner(art.path, art.inputs, self.options, self.timeout_s),
                f"target {tgt.name}: runner output")
        except ContractError as exc:
            raise EdgekdError(str(exc)) from None
        if result.format != art.format:
            raise EdgekdError(f"{art.path}: runner ran it as {result.format}, expected {art.format}")
        return result

    def entry(self, result: RunnerResult, previous: dict | None = None) -> dict:
        """The entry holding `previous`'s repeats (when they were measured the same way) plus
        `result` as one more repeat."""
        export = self.art.export or {}
        entry = BenchEntry.measured(name=self.art.name, role=self.art.role, fmt=self.art.format,
                                    precision=self.art.precision, target=self.target.name,
                                    result=result, accuracy=self.art.accuracy,
                                    parity=export.get("parity"),
                                    size_bytes=export.get("size_bytes"),
                                    artifact=str(self.art.path)).to_dict()
        entry["metrics"] = self.art.metrics
        return add_repeat(entry, result.to_dict(), previous)


def prepare(artifact: str | Path, target: Any, *, threads: int, batch_size: int,
            seq_len: int | None, warmup: int, min_iterations: int, min_time_s: float,
            energy: str = "auto", timeout_s: float | None = None,
            generate: dict | None = None) -> Measurement:
    """Resolve and check an artifact and its target before anything is measured.

    `target` is a Target or a spec (`local`, `ssh://user@host:port`, a profile name or file).
    A causal LM is measured generating (`generate`: prompt lengths and new tokens, default
    DEFAULT_GENERATE), batch 1. Raises EdgekdError for a bad artifact or target."""
    from edgekd.targets.profiles import get_target

    art = resolve_artifact(artifact)
    check_batch_size(art, batch_size)
    if art.generative:
        generate = generate or DEFAULT_GENERATE
        if batch_size != 1:
            raise EdgekdError(f"{art.name} is a causal LM: it is measured generating at batch "
                              f"size 1, not {batch_size}")
        context = (art.export or {}).get("seq_len")
        needed = max(generate["prompt_lengths"]) + generate["new_tokens"]
        if context and needed > context:
            raise EdgekdError(f"{art.name} holds a context of {context} tokens: a prompt of "
                              f"{max(generate['prompt_lengths'])} + {generate['new_tokens']} new "
                              "tokens does not fit (use shorter prompt lengths)")
    else:
        generate = None
    tgt = get_target(target)
    if energy == "auto" and tgt.profile is not None:
        energy = tgt.profile.energy
    if seq_len is None and art.export and art.export.get("seq_len"):
        seq_len = int(art.export["seq_len"])
    options = runner_options(precision=art.precision, threads=threads, batch_size=batch_size,
                             seq_len=seq_len, warmup=warmup, min_iterations=min_iterations,
                             min_time_s=min_time_s, energy=energy, power=tgt.power_options(),
                             generate=generate)
    if timeout_s is None:  # generous: model load (torch import on a slow board) + the windows
        timeout_s = 300.0 + 3 * (min_time_s + options["warmup_time"] + options["idle_time"])
    return Measurement(art, tgt, options, timeout_s)


def add_repeat(entry: dict, result: dict, previous: dict | None = None) -> dict:
    """`entry` (built from the runner `result`) with the repeats of `previous` plus this one, and
    its top-level numbers recomputed: pooled samples and their latency summary, the median of the
    other per-repeat numbers (the peak memory: the largest). A previous entry measured with
    another runtime version or on another machine is not continued: its repeats are dropped."""
    import numpy as np

    from edgekd.benchmarks.contracts import REPEAT_KEYS
    from edgekd.benchmarks.stats import summarize

    repeats = []
    if previous and previous.get("status") == "ok" and same_measurement(previous, entry):
        repeats = list(previous.get("repeats") or [])
    repeats.append({k: result.get(k) for k in REPEAT_KEYS})
    pooled = [x for rep in repeats for x in rep["samples_ms"]]
    entry.update(repeats=repeats, samples_ms=pooled, latency_ms=summarize(pooled))
    if entry.get("generation"):
        from edgekd.benchmarks.generation import pooled as pooled_generation

        entry["generation"] = pooled_generation([rep["generation"] for rep in repeats
                                                 if rep.get("generation")])
    for key in ("throughput_per_s", "load_time_ms", "first_inference_ms", "energy_j"):
        values = [rep[key] for rep in repeats if rep.get(key) is not None]
        entry[key] = float(np.median(values)) if values else None
    entry["peak_memory_mb"] = max(rep["peak_memory_mb"] for rep in repeats)
    return entry


def same_measurement(a: dict, b: dict) -> bool:
    """Whether two entries measured the same thing the same way: runtime, its version and
    settings, and the machine (CPU model, cores) that ran it."""
    def key(e: dict) -> tuple:
        cpu = (e.get("environment") or {}).get("cpu") or {}
        return (e.get("runtime"), e.get("runtime_version"), e.get("runtime_settings"),
                e.get("threads"), e.get("batch_size"), e.get("seq_len"),
                cpu.get("model"), cpu.get("cores_logical"))
    return key(a) == key(b)


def measure_round_robin(measurements: list[Measurement], repeats: int,
                        on_entry=None) -> list[dict]:
    """`repeats` fresh-process measurements of each artifact, interleaved: repeat 1 of every
    artifact, then repeat 2, ..., so drift over time falls on all of them alike. `on_entry(i,
    entry)` is called after each runner invocation. Returns one entry per measurement."""
    if repeats < 1:
        raise EdgekdError(f"repeats must be >= 1, got {repeats}")
    entries: list[dict | None] = [None] * len(measurements)
    for _ in range(repeats):
        for i, m in enumerate(measurements):
            entries[i] = m.entry(m.run_once(), entries[i])
            if on_entry:
                on_entry(i, entries[i])
    return entries


def bench_artifact(artifact: str | Path, target: Any, *, threads: int, batch_size: int,
                   seq_len: int | None, warmup: int, min_iterations: int, min_time_s: float,
                   energy: str = "auto", timeout_s: float | None = None, repeats: int = 1,
                   generate: dict | None = None) -> dict:
    """Benchmark one artifact on one target at one thread count, `repeats` fresh processes;
    the entry (docs/contracts.md). A causal LM is measured generating (`generate`).

    Raises EdgekdError for a bad artifact, an unreachable or hung target, or a missing runtime.
    """
    m = prepare(artifact, target, threads=threads, batch_size=batch_size, seq_len=seq_len,
                warmup=warmup, min_iterations=min_iterations, min_time_s=min_time_s,
                energy=energy, timeout_s=timeout_s, generate=generate)
    return measure_round_robin([m], repeats)[0]


def failed_entry(artifact: str | Path, target: str, threads: int, error: str, *,
                 batch_size: int = 1, seq_len: int | None = None) -> dict:
    """An entry that records a failure (status "failed", numbers null), for a run that goes on."""
    try:
        art = resolve_artifact(artifact)
        name, role, fmt, precision, accuracy = art.name, art.role, art.format, art.precision, art.accuracy
    except EdgekdError:
        path = Path(artifact)
        try:
            fmt = runtimes.format_of(str(path))
        except runtimes.ArtifactError:
            fmt = None
        name, role, precision, accuracy = path.stem, None, None, None
    return BenchEntry.failed(name=name, role=role, fmt=fmt, precision=precision, target=target,
                             error=error, threads=threads, batch_size=batch_size,
                             seq_len=seq_len, accuracy=accuracy).to_dict()


def entry_file_name(entry: dict) -> str:
    """The bench/<target-slug>/ file of one entry, named by every setting that changes the
    measurement, so a rerun with other settings measures anew: `<name>-t<threads>-b<batch>-s<seq>`
    (the precision, hence the runtime settings, is part of the name). The number of repeats is
    not in the name: an entry with fewer repeats than asked is incomplete (`is_complete`) and
    gets more; one with more is complete."""
    generation = entry.get("generation")
    if generation:      # generate scenario: `<name>-t<threads>-p<lengths>-n<new tokens>`
        lengths = generation.get("prompt_lengths") or [p["prompt_len"] for p in generation["prompts"]]
        return (f"{entry['name']}-t{entry['threads']}-p{'_'.join(str(n) for n in lengths)}"
                f"-n{generation['new_tokens']}.json")
    return (f"{entry['name']}-t{entry['threads']}-b{entry.get('batch_size') or 1}"
            f"-s{entry.get('seq_len') or 'auto'}.json")


def is_complete(entry: dict | None, repeats: int) -> bool:
    """Whether a stored entry needs no more measuring: ok, with at least `repeats` repeats."""
    return bool(entry) and entry.get("status") == "ok" and len(entry.get("repeats") or []) >= repeats


def bench_document(entries: list[dict], run: str | None = None) -> dict:
    """The `edgekd.report/1` document `edgekd bench --out` writes (and `edgekd compare` reads)."""
    from datetime import datetime, timezone

    from edgekd.benchmarks.environment import collect

    return Report(entries=entries, environment=collect(), run=run,
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds")).to_dict()
