"""The files the stages hand each other, as typed records: one place for every field and schema.

Standalone (stdlib only): it ships to the device with the runner, whose result is a
`RunnerResult`. The host builds `ExportRecord`s (export.json), `BenchEntry`s (bench/…/*.json and
the entries of report.json) and `Report`s from these classes only, so a field is named once.
Readers validate with `from_dict`, which refuses a malformed document with a one-line
`ContractError` naming the field (the CLI turns it into exit 2). docs/contracts.md describes the
same fields for people.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

EXPORT_SCHEMA = "edgekd.export/1"
RUNNER_SCHEMA = "edgekd.runner/1"
REPORT_SCHEMA = "edgekd.report/1"

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max", "n")
# What a bench entry keeps of each repeat (one runner invocation) in `repeats`.
REPEAT_KEYS = ("samples_ms", "latency_ms", "throughput_per_s", "load_time_ms",
               "first_inference_ms", "peak_memory_mb", "energy_j", "measure", "cpu_affinity",
               "generation")


class ContractError(ValueError):
    """A document does not have the shape its schema promises."""


def _check_number(where: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{where} must be a number, got {type(value).__name__} {value!r:.40}")


def _known(cls, data: dict) -> dict:
    """The keys of `data` that are fields of `cls` (older/newer writers may add others)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


class _Record:
    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)


@dataclass
class ExportRecord(_Record):
    """export.json: one exported artifact, how it was made and how it verified."""

    name: str
    role: Optional[str]
    format: str
    precision: str
    status: str = "ok"                      # "ok" | "failed"
    error: Optional[str] = None
    artifact: Optional[str] = None          # file name inside the export folder
    source_model: Optional[str] = None
    source_fingerprint: Optional[str] = None
    task: Optional[str] = None
    parity: Optional[dict] = None           # the task's parity measure vs the PyTorch source
    accuracy: Optional[float] = None
    metrics: Optional[dict] = None          # the task's quality metrics on the eval split
    size_bytes: Optional[int] = None
    export_time_s: Optional[float] = None
    seq_len: Optional[int] = None
    batch_size: Optional[int] = None        # None: dynamic batch
    options: dict = field(default_factory=dict)   # exporter options asked for (int4_group_size)
    input_names: list = field(default_factory=list)
    tools: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    runtime: Optional[str] = None           # what verified it (the benchmark's adapter)
    runtime_version: Optional[str] = None
    runtime_settings: Optional[dict] = None
    schema: str = EXPORT_SCHEMA

    @classmethod
    def failed(cls, name: str, role: Optional[str], fmt: str, precision: str,
               error: str) -> "ExportRecord":
        """A record for an export that could not be made at all."""
        return cls(name, role, fmt, precision, status="failed", error=error)

    @classmethod
    def from_dict(cls, data: Any, where: str = "export.json") -> "ExportRecord":
        """Validate and read an export.json document."""
        if not isinstance(data, dict):
            raise ContractError(f"{where} must hold a JSON object")
        missing = [k for k in ("name", "format", "precision") if not isinstance(data.get(k), str)]
        if missing:
            raise ContractError(f"{where}: '{missing[0]}' is missing or not a string")
        for key in ("accuracy", "size_bytes", "export_time_s", "seq_len", "batch_size"):
            _check_number(f"{where}: {key}", data.get(key))
        return cls(**_known(cls, {"role": None, **data}))


@dataclass
class RunnerResult(_Record):
    """What the on-device runner prints: one measurement of one artifact."""

    format: str
    runtime: str
    runtime_version: str
    runtime_settings: dict
    threads: int
    batch_size: int
    seq_len: int
    size_bytes: int
    load_time_ms: float
    first_inference_ms: float
    warmup: dict
    measure: dict
    latency_ms: dict
    samples_ms: list
    throughput_per_s: float
    peak_memory_mb: float
    peak_memory_window_mb: float
    energy_j: Optional[float]
    energy_method: str
    energy_detail: Optional[dict]
    cpu: dict
    host: str
    python: str
    cpu_affinity: Optional[list]
    environment: Optional[dict] = None      # the target machine, described by itself
    scenario: str = "call"                  # "call" (one forward pass) or "generate" (LMs)
    # generate: per prompt length TTFT and TPOT samples and summaries (benchmarks/generation.py);
    # latency_ms / samples_ms are then the time per output token
    generation: Optional[dict] = None
    schema: str = RUNNER_SCHEMA

    @classmethod
    def from_dict(cls, data: Any, where: str = "runner output") -> "RunnerResult":
        """Validate the runner's JSON (a device may run an older or broken runner)."""
        if not isinstance(data, dict) or data.get("schema") != RUNNER_SCHEMA:
            raise ContractError(f"{where} is not an {RUNNER_SCHEMA} document")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
                   and f.name not in ("environment", "scenario", "generation")]
        if missing:
            raise ContractError(f"{where} lacks '{missing[0]}'")
        _check_latency(where, data["latency_ms"], data["samples_ms"])
        return cls(**_known(cls, data))


@dataclass
class BenchEntry(_Record):
    """One artifact measured on one target with one set of settings (a bench/ file, a report
    entry). A failure keeps the identity and the error, and no numbers."""

    name: str
    role: Optional[str]
    format: Optional[str]
    precision: Optional[str]
    target: Optional[str]
    threads: Optional[int]
    batch_size: Optional[int]
    seq_len: Optional[int]
    status: str = "ok"
    error: Optional[str] = None
    accuracy: Optional[float] = None
    parity: Optional[dict] = None
    size_bytes: Optional[int] = None
    latency_ms: Optional[dict] = None
    samples_ms: list = field(default_factory=list)
    throughput_per_s: Optional[float] = None
    load_time_ms: Optional[float] = None
    first_inference_ms: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    peak_memory_window_mb: Optional[float] = None
    energy_j: Optional[float] = None
    energy_method: str = "none"
    energy_detail: Optional[dict] = None
    runtime: Optional[str] = None
    runtime_version: Optional[str] = None
    runtime_settings: Optional[dict] = None
    warmup: Optional[dict] = None
    measure: Optional[dict] = None
    cpu: Optional[dict] = None
    host: Optional[str] = None
    python: Optional[str] = None
    cpu_affinity: Optional[list] = None
    artifact: Optional[str] = None
    gflop: Optional[float] = None           # operations of one inference (report time, from config)
    gflop_per_s: Optional[float] = None     # gflop / p50: how close the runtime comes to the CPU
    environment: Optional[dict] = None      # the target machine (RunnerResult.environment)
    scenario: str = "call"                  # RunnerResult.scenario
    generation: Optional[dict] = None       # generate scenario: TTFT / TPOT per prompt length
    metrics: Optional[dict] = None          # the export's quality metrics (e.g. perplexity)
    # One item per fresh-process measurement (REPEAT_KEYS); the top-level numbers summarise them:
    # samples_ms pooled, latency_ms of the pooled samples, the other numbers the median (memory the max).
    repeats: list = field(default_factory=list)

    @classmethod
    def measured(cls, *, name: str, role: Optional[str], fmt: str, precision: Optional[str],
                 target: str, result: RunnerResult, accuracy: Optional[float] = None,
                 parity: Optional[dict] = None, size_bytes: Optional[int] = None,
                 artifact: Optional[str] = None) -> "BenchEntry":
        """The entry of a successful measurement: identity from the host, numbers from the runner."""
        numbers = {k: v for k, v in result.to_dict().items()
                   if k in {f.name for f in dataclasses.fields(cls)} and k not in ("format",)}
        numbers["size_bytes"] = size_bytes or result.size_bytes
        return cls(name=name, role=role, format=fmt, precision=precision, target=target,
                   accuracy=accuracy, parity=parity, artifact=artifact, **numbers)

    @classmethod
    def failed(cls, *, name: str, role: Optional[str], fmt: Optional[str],
               precision: Optional[str], target: Optional[str], error: str,
               threads: Optional[int] = None, batch_size: Optional[int] = None,
               seq_len: Optional[int] = None, accuracy: Optional[float] = None,
               parity: Optional[dict] = None, size_bytes: Optional[int] = None) -> "BenchEntry":
        """The one constructor of a failure (a bench run that failed, or a failed export)."""
        return cls(name=name, role=role, format=fmt, precision=precision, target=target,
                   threads=threads, batch_size=batch_size, seq_len=seq_len, status="failed",
                   error=error, accuracy=accuracy, parity=parity, size_bytes=size_bytes)

    @classmethod
    def from_dict(cls, data: Any, where: str = "entry") -> "BenchEntry":
        """Validate one entry; a malformed one is a ContractError naming the field."""
        if not isinstance(data, dict):
            raise ContractError(f"{where} must be a JSON object")
        if not isinstance(data.get("name"), str):
            raise ContractError(f"{where}: 'name' is missing or not a string")
        where = f"{where} {data['name']}"
        if data.get("status", "ok") not in ("ok", "failed"):
            raise ContractError(f"{where}: status must be 'ok' or 'failed'")
        for key in ("threads", "batch_size", "seq_len", "accuracy", "size_bytes",
                    "peak_memory_mb", "energy_j"):
            _check_number(f"{where}: {key}", data.get(key))
        if data.get("status", "ok") == "ok":
            _check_latency(where, data.get("latency_ms"), data.get("samples_ms", []))
        repeats = data.get("repeats", [])
        if not isinstance(repeats, list):
            raise ContractError(f"{where}: repeats must be a list of objects")
        for i, rep in enumerate(repeats):
            if not isinstance(rep, dict):
                raise ContractError(f"{where}: repeats[{i}] must be an object")
            _check_latency(f"{where}: repeats[{i}]", rep.get("latency_ms"), rep.get("samples_ms"))
        base = {"role": None, "format": None, "precision": None, "target": None, "threads": None,
                "batch_size": None, "seq_len": None}
        return cls(**_known(cls, {**base, **data}))


def _check_latency(where: str, latency: Any, samples: Any) -> None:
    if not isinstance(latency, dict):
        raise ContractError(f"{where}: latency_ms must be an object with {', '.join(LATENCY_KEYS)}")
    for key in ("p50", "mean", "n"):
        if key not in latency:
            raise ContractError(f"{where}: latency_ms lacks '{key}'")
    for key, value in latency.items():
        _check_number(f"{where}: latency_ms.{key}", value, allow_none=False)
    if not isinstance(samples, list):
        raise ContractError(f"{where}: samples_ms must be a list of numbers")
    for value in samples:
        _check_number(f"{where}: samples_ms", value, allow_none=False)


@dataclass
class Report(_Record):
    """report.json (and what `edgekd bench --out` writes): the environment and the entries."""

    entries: list
    environment: dict = field(default_factory=dict)
    run: Optional[str] = None
    created: Optional[str] = None
    timings_s: Optional[dict] = None
    accuracy_budget: Optional[float] = None   # the recipe's report.accuracy_budget
    perplexity_budget: Optional[float] = None  # causal LMs: the recipe's report.perplexity_budget
    recommended: Optional[list] = None        # per setting: the artifact to ship, and why
    schema: str = REPORT_SCHEMA

    @classmethod
    def from_dict(cls, data: Any, where: str = "report") -> "Report":
        """Validate a report document; entries are validated one by one."""
        if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ContractError(f"{where}: expected schema {REPORT_SCHEMA}, found {found!r}")
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise ContractError(f"{where}: 'entries' must be a list of objects")
        checked = [BenchEntry.from_dict(e, f"{where}: entry {i}").to_dict()
                   for i, e in enumerate(entries)]
        return cls(**_known(cls, {**data, "entries": checked}))
