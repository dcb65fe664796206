"""Exporters: one module per format (`onnx.py`, `openvino.py`, `tflite.py`), found by name.

A format is an exporter module here plus a runtime adapter `benchmarks/runtime_<format>.py`
(which loads and runs the artifact, for verification and benchmarks alike); a module is a
format when both exist, so nothing lists them. An exporter module defines `FORMAT` (its own
name), `PRECISIONS`, `runtime_missing()` and
`export(model_dir, out_dir, precision, *, seq_len, calibration, task, options=None) -> dict`
(`options`: the recipe's per-precision exporter settings, e.g. `int4_group_size`; a module
lists those it honours in `OPTIONS`, and `check_supported` refuses the others).

`export_artifact` is what the pipeline and `edgekd export` call: refuse what cannot work,
export into a staging folder, verify against PyTorch through the runtime adapter, write
export.json + inputs.npz and the bundle (tokenizer, config, labels, model card:
`bundle.py`), and move the folder into place atomically.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from edgekd.benchmarks.contracts import EXPORT_SCHEMA, ExportRecord
from edgekd.errors import EdgekdError

EXPORT_FILE = "export.json"


def available_formats() -> list[str]:
    """Every format: an exporter module here with a runtime adapter beside the runner (found by
    file name: nothing is imported, so the CLI can list them cheaply)."""
    import edgekd.benchmarks

    adapters = {p.stem[len("runtime_"):] for p in
                Path(edgekd.benchmarks.__file__).parent.glob("runtime_*.py")}
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if not info.name.startswith("_") and info.name in adapters)


def get_exporter(fmt: str) -> ModuleType:
    """The module for format `fmt`, or EdgekdError listing the known formats."""
    if fmt in available_formats():
        return importlib.import_module(f"{__name__}.{fmt}")
    raise EdgekdError(f"unknown export format '{fmt}' (known: {', '.join(available_formats())})")


def available_precisions() -> list[str]:
    """Every precision some format can export, in a stable order."""
    seen: list[str] = []
    for fmt in available_formats():
        seen += [p for p in get_exporter(fmt).PRECISIONS if p not in seen]
    return seen


def precisions_for(exporter: ModuleType, task: ModuleType | None = None) -> tuple:
    """The precisions `exporter` can make for `task`: a causal LM (exported with its KV cache)
    has its own list, `LM_PRECISIONS` (empty where the format cannot export one yet)."""
    if task is not None and getattr(task, "GENERATIVE", False):
        return tuple(getattr(exporter, "LM_PRECISIONS", ()))
    return tuple(exporter.PRECISIONS)


def check_supported(fmt: str, precision: str, *, calibration: Any = None,
                    task: ModuleType | None = None, options: dict | None = None) -> ModuleType:
    """Refuse up front what a format cannot do: unknown format, unsupported precision (for the
    task), an option the exporter does not take (its `OPTIONS`), missing runtime, int8-static
    or data-aware int4 without calibration data. Returns the exporter module."""
    exporter = get_exporter(fmt)
    supported = precisions_for(exporter, task)
    if precision not in supported:
        what = f" a {task.TASK} model" if task is not None and getattr(task, "GENERATIVE", False) else ""
        raise EdgekdError(f"{fmt} cannot export{what} {precision} (supported: "
                          f"{', '.join(supported) or 'none yet'})")
    foreign = sorted(set(options or {}) - set(getattr(exporter, "OPTIONS", ())))
    if foreign:
        raise EdgekdError(f"{fmt} {precision} does not take export.{foreign[0]} (it takes: "
                          f"{', '.join(getattr(exporter, 'OPTIONS', ())) or 'none'}); give the "
                          f"format its own precisions with export.format_precisions")
    if (precision == "int8-static" or (options or {}).get("int4_data_aware")) and not calibration:
        raise EdgekdError(f"{fmt} {precision}{' data-aware' if precision == 'int4' else ''} needs "
                          "calibration examples: pass --data (a recipe or data path) so real "
                          "task examples can be used")
    reason = exporter.runtime_missing(precision)  # last: importing a converter is the slow check
    if reason:
        raise EdgekdError(f"{fmt} {precision} export is not available here: {reason}")
    return exporter


def export_artifact(model_dir, fmt: str, precision: str, out_dir, *, role: str | None, seq_len: int,
                    eval_inputs: dict | None, eval_labels=None, calibration: dict | None = None,
                    threads: int = 1, task: ModuleType | None = None,
                    references=None, limits: dict | None = None,
                    options: dict | None = None) -> dict:
    """Export `model_dir` as `fmt`/`precision` into `out_dir`, verified; returns export.json's
    contents. Status "failed" (folder kept for inspection) when the artifact does not run or
    misses its parity threshold; EdgekdError when the export itself is impossible or fails.
    `role` is "teacher", "student" or None (a model exported on its own: named "model-...").
    `references` (a `verify.ReferenceOutputs`) shares the PyTorch outputs between the exports
    of one source; verification runs at `threads`, like the benchmark. `limits` (a causal LM's
    `task.thresholds`) overrides the precision's default parity and perplexity thresholds.
    `options` (`ExportConfig.options(precision)`) go to the exporter and into export.json."""
    from edgekd.data import save_inputs
    from edgekd.exporters import bundle, verify
    from edgekd.files import replace_dir_atomic, staging_dir, write_json_atomic
    from edgekd.tasks import get_task

    task = task or get_task()
    exporter = check_supported(fmt, precision, calibration=calibration, task=task, options=options)
    model_dir = verify.check_model_dir(model_dir)
    out_dir = Path(out_dir)
    name = f"{role or 'model'}-{fmt}-{precision}"
    options = dict(options or {})
    done = completed_export(out_dir, model_dir, fmt, precision, seq_len, options)
    if done is not None:
        if bundle.needs_bundle(out_dir, model_dir):  # e.g. exported before bundles existed
            bundle.write_bundle(out_dir, model_dir, done)
        return done
    if eval_inputs is None:
        eval_inputs, eval_labels = task.generated_inputs(model_dir, seq_len), None
    references = references or verify.ReferenceOutputs()
    reference = references.get(model_dir, task, eval_inputs)

    stage = staging_dir(out_dir)
    started = time.perf_counter()
    try:
        info = exporter.export(model_dir, stage, precision, seq_len=seq_len,
                               calibration=calibration, task=task, options=options)
    except EdgekdError as exc:
        _remove(stage)
        message = str(exc)
        raise EdgekdError(message if message.startswith(fmt) else f"{fmt}: {message}") from None
    except BaseException:
        _remove(stage)
        raise
    export_time = time.perf_counter() - started
    generative = getattr(task, "GENERATIVE", False)

    checked = verify.verify_artifact(stage / info["artifact"], fmt, precision, task=task,
                                     reference=reference, inputs=eval_inputs, labels=eval_labels,
                                     threads=threads, **({"limits": limits} if limits else {}))
    if generative and checked["metrics"] is not None and eval_labels:
        # the artifact's perplexity is judged against its own source's on the same texts
        checked["metrics"]["source_perplexity"] = references.source_perplexity(model_dir, task,
                                                                                 eval_labels)
        checked["error"] = checked["error"] or task.perplexity_error(checked["metrics"],
                                                                     checked["parity"])
    record = ExportRecord(
        name=name, role=role, format=fmt, precision=precision,
        status="failed" if checked["error"] else "ok", artifact=info["artifact"],
        source_model=str(model_dir.resolve()), source_fingerprint=source_fingerprint(model_dir),
        task=task.TASK, size_bytes=artifact_size(stage), export_time_s=round(export_time, 3),
        seq_len=int(seq_len), batch_size=info.get("batch_size"), options=options,
        input_names=list(info["input_names"]), tools=info.get("tools", {}),
        settings=info.get("settings", {}), **checked).to_dict()
    # After size_bytes is measured: the bundle files are not part of the artifact's size.
    bundle.write_bundle(stage, model_dir, record)
    if generative:     # prompts (the runner cuts its lengths from them)
        save_inputs(stage, eval_inputs)
    else:
        save_inputs(stage, {k: v for k, v in eval_inputs.items() if k in record["input_names"]},
                    eval_labels)
    write_json_atomic(stage / EXPORT_FILE, record)
    replace_dir_atomic(stage, out_dir)
    return record


def failed_record(name: str, role: str | None, fmt: str, precision: str, error: str) -> dict:
    """export.json for an export that could not be made (the report lists it as failed)."""
    return ExportRecord.failed(name, role, fmt, precision, error).to_dict()


def completed_export(out_dir: Path, model_dir: Path, fmt: str, precision: str,
                     seq_len: int, options: dict | None = None) -> dict | None:
    """The existing export.json when `out_dir` already holds an ok export of the same source
    (same folder, unchanged files), format, precision, sequence length and exporter options (so
    a rerun skips it), else None."""
    from edgekd.files import read_json

    path = Path(out_dir) / EXPORT_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("schema") != EXPORT_SCHEMA:
        return None
    # An export verified before verification ran through the runtime adapter has no
    # runtime_settings: it is redone rather than trusted.
    same = (record.get("status") == "ok" and record.get("runtime_settings") is not None and record.get("format") == fmt
            and record.get("precision") == precision and record.get("seq_len") == seq_len
            and (record.get("options") or {}) == (options or {})
            and record.get("source_model") == str(Path(model_dir).resolve())
            and record.get("source_fingerprint") == source_fingerprint(model_dir))
    if same and (Path(out_dir) / str(record.get("artifact"))).is_file():
        return record
    return None


def source_fingerprint(model_dir: Path) -> str:
    """Identifies the model folder's current contents cheaply (names, sizes, mtimes of its
    config and weights), so a retrained model is exported again rather than skipped."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted(Path(model_dir).iterdir()):
        if path.is_file() and (path.name == "config.json" or path.suffix in (".safetensors", ".bin")):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def artifact_size(folder: Path) -> int:
    """Bytes on disk of everything the artifact consists of (e.g. OpenVINO .xml + .bin, ONNX
    external data): every file in its folder except the verification records."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*")
               if p.is_file() and p.name not in (EXPORT_FILE, "inputs.npz"))


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
