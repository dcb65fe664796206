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

from edgekd.errors import EdgekdError

SUFFIX_FORMATS = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite"}
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


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"{what} {path} is unreadable or not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EdgekdError(f"{what} {path} must hold a JSON object")
    return data


def _from_export(folder: Path, export: dict) -> Artifact:
    where = folder / "export.json"
    if export.get("status", "ok") != "ok":
        raise EdgekdError(f"{folder}: the export failed ({export.get('error') or 'no reason given'}); "
                          "a failed export is never benchmarked")
    if not export.get("artifact") or not export.get("format"):
        raise EdgekdError(f"{where}: needs 'artifact' and 'format' (docs/contracts.md)")
    path = folder / export["artifact"]
    if not path.exists():
        raise EdgekdError(f"{where} names artifact '{export['artifact']}', which is missing")
    return Artifact(path, folder / INPUTS_FILE, export.get("name") or folder.name, export.get("role"),
                    export["format"], export.get("precision"), export, export.get("accuracy"))


def resolve_artifact(path: str | Path) -> Artifact:
    """What `path` is (export folder, model folder, or artifact file) and its inputs file."""
    path = Path(path)
    if not path.exists():
        raise EdgekdError(f"artifact not found: {path}")
    if path.is_dir() and (path / "export.json").is_file():
        art = _from_export(path, _read_json(path / "export.json", "export file"))
    elif path.is_dir() and (path / "config.json").is_file():
        role = path.name if path.name in ("teacher", "student") else None
        accuracy = None
        if (path / "metrics.json").is_file():
            accuracy = _read_json(path / "metrics.json", "metrics file").get("accuracy")
        art = Artifact(path, path / INPUTS_FILE, f"{role or path.name}-pytorch-fp32", role,
                       "pytorch", "fp32", None, accuracy)
    elif path.is_dir():
        raise EdgekdError(f"{path} is a folder without export.json or config.json: not an artifact")
    elif path.suffix.lower() in SUFFIX_FORMATS:
        export_file = path.parent / "export.json"
        export = _read_json(export_file, "export file") if export_file.is_file() else None
        if export and Path(export.get("artifact", "")).name == path.name:
            art = _from_export(path.parent, export)
        else:
            art = Artifact(path, path.parent / INPUTS_FILE, path.stem, None,
                           SUFFIX_FORMATS[path.suffix.lower()], None)
    else:
        raise EdgekdError(f"{path}: unknown artifact type (expected .onnx, .xml, .tflite, an export "
                          "folder or a model folder)")
    if art.path.is_file() and art.path.stat().st_size == 0:
        raise EdgekdError(f"artifact {art.path} is empty (corrupt or an interrupted write)")
    if not art.inputs.is_file():
        raise EdgekdError(f"no {INPUTS_FILE} next to {art.path}: the runner needs real tokenized "
                          f"examples there (edgekd export writes them; see docs/contracts.md)")
    return art


def runner_options(*, threads: int, batch_size: int, seq_len: int | None, warmup: int,
                   min_iterations: int, min_time_s: float, energy: str, power: dict) -> dict:
    """The runner's options. Warm-up runs at least `warmup` calls and a tenth of the measured
    time (at most 1 s); idle power is measured for 1 s only for a real meter."""
    from edgekd.benchmarks.energy import METERS

    if energy not in ("auto", "none", *METERS):
        raise EdgekdError(f"unknown energy meter '{energy}' (choose: auto, none, {', '.join(METERS)})")
    return {"threads": threads, "batch_size": batch_size, "seq_len": seq_len, "warmup": warmup,
            "warmup_time": min(1.0, 0.1 * min_time_s), "min_iterations": min_iterations,
            "min_time": min_time_s, "energy": energy,
            "idle_time": 0.0 if energy.split(":")[0] in ("none", "estimate") else 1.0,
            "power_profile": json.dumps(power) if power else None}


RUNNER_KEYS = ("threads", "batch_size", "seq_len", "latency_ms", "samples_ms", "throughput_per_s",
               "load_time_ms", "first_inference_ms", "peak_memory_mb", "peak_memory_window_mb",
               "energy_j", "energy_method", "runtime", "runtime_version", "warmup", "cpu", "host",
               "measure", "energy_detail", "python", "cpu_affinity")


def bench_artifact(artifact: str | Path, target: Any, *, threads: int, batch_size: int,
                   seq_len: int | None, warmup: int, min_iterations: int, min_time_s: float,
                   energy: str = "auto", timeout_s: float | None = None) -> dict:
    """Benchmark one artifact on one target at one thread count; the entry (docs/contracts.md).

    `target` is a Target or a spec (`local`, `ssh://user@host:port`, a profile name or file).
    Raises EdgekdError for a bad artifact, an unreachable or hung target, or a missing runtime.
    """
    from edgekd.targets.profiles import get_target

    art = resolve_artifact(artifact)
    tgt = get_target(target)
    if energy == "auto" and tgt.profile is not None:
        energy = tgt.profile.energy
    if seq_len is None and art.export and art.export.get("seq_len"):
        seq_len = int(art.export["seq_len"])
    options = runner_options(threads=threads, batch_size=batch_size, seq_len=seq_len, warmup=warmup,
                             min_iterations=min_iterations, min_time_s=min_time_s, energy=energy,
                             power=tgt.power_options())
    if timeout_s is None:  # generous: model load (torch import on a slow board) + the windows
        timeout_s = 300.0 + 3 * (min_time_s + options["warmup_time"] + options["idle_time"])
    result = tgt.run_runner(art.path, art.inputs, options, timeout_s)
    if result.get("format") != art.format:
        raise EdgekdError(f"{art.path}: runner ran it as {result.get('format')}, expected {art.format}")
    entry = {"name": art.name, "role": art.role, "format": art.format, "precision": art.precision,
             "target": tgt.name, "status": "ok", "error": None, "accuracy": art.accuracy,
             "parity": (art.export or {}).get("parity"),
             "size_bytes": (art.export or {}).get("size_bytes") or result["size_bytes"],
             "artifact": str(art.path)}
    entry.update({k: result.get(k) for k in RUNNER_KEYS})
    return entry


def failed_entry(artifact: str | Path, target: str, threads: int, error: str, *,
                 batch_size: int = 1, seq_len: int | None = None) -> dict:
    """An entry that records a failure (status "failed", numbers null), for a run that goes on."""
    try:
        art = resolve_artifact(artifact)
        name, role, fmt, precision, accuracy = art.name, art.role, art.format, art.precision, art.accuracy
    except EdgekdError:
        path = Path(artifact)
        name, role, fmt, precision, accuracy = path.stem, None, SUFFIX_FORMATS.get(path.suffix), None, None
    return {"name": name, "role": role, "format": fmt, "precision": precision, "target": target,
            "threads": threads, "batch_size": batch_size, "seq_len": seq_len, "status": "failed",
            "error": error, "accuracy": accuracy, "parity": None, "size_bytes": None,
            "latency_ms": None, "samples_ms": [], "throughput_per_s": None, "load_time_ms": None,
            "first_inference_ms": None, "peak_memory_mb": None, "peak_memory_window_mb": None,
            "energy_j": None, "energy_method": "none", "runtime": None, "runtime_version": None,
            "warmup": None, "cpu": None, "host": None}


def entry_file_name(entry: dict) -> str:
    """`<name>-t<threads>.json`, the bench/<target-slug>/ file of one entry."""
    return f"{entry['name']}-t{entry['threads']}.json"


def bench_document(entries: list[dict], run: str | None = None) -> dict:
    """The `edgekd.report/1` document `edgekd bench --out` writes (and `edgekd compare` reads)."""
    from datetime import datetime, timezone

    try:
        from edgekd.benchmarks.environment import collect
        environment = collect()
    except ImportError:  # the report engineer's module; minimal fallback if it is absent
        import platform
        environment = {"host": platform.node(), "python": platform.python_version()}
    return {"schema": "edgekd.report/1", "run": run,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": environment, "entries": entries}
