"""The recipe: what to distil, export and benchmark, as typed, validated plain data.

A recipe is a YAML file loaded into the dataclasses below. `--set a.b=c` overrides any key
(the value is parsed as YAML, so `--set distill.epochs=1` gives an int). Unknown keys and wrong
types are errors that name the key; bad combinations are rejected in `__post_init__`, before any
work starts. The resolved recipe is saved into the run folder.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekd.config import from_dict
from edgekd.errors import EdgekdError
from edgekd.recipe_distill import (KD_KINDS, DistillConfig,  # noqa: F401 (re-exported)
                                   OnPolicyConfig, SequenceKDConfig)
from edgekd.recipe_student import (LAYER_SELECTIONS, FromTeacherConfig,  # noqa: F401 (re-exported)
                                   StudentConfig, VocabularyConfig, WidthConfig)

# What every format exports; other precisions (OpenVINO bf16) are asked for by name.
DEFAULT_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
DEFAULT_RECIPE = "bbc-news"


def _default_formats() -> list[str]:
    from edgekd.exporters import available_formats

    return available_formats()


@dataclass
class SplitConfig:
    validation: float = 0.1
    test: float = 0.2
    seed: int = 0

    def __post_init__(self):
        if not (0 <= self.validation < 1 and 0 < self.test < 1 and self.validation + self.test < 1):
            raise ValueError("split fractions must be in [0, 1) with validation + test < 1")


@dataclass
class DataConfig:
    path: str
    text_column: str = "text"
    label_column: str = "label"
    split: SplitConfig = field(default_factory=SplitConfig)
    max_length: int = 128
    unlabeled: str | None = None
    max_train_chunks: int | None = None   # causal-LM: at most this many training chunks

    def __post_init__(self):
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8")
        if self.max_train_chunks is not None and self.max_train_chunks < 1:
            raise ValueError("max_train_chunks must be >= 1 (or null for all)")


@dataclass
class FineTuneConfig:
    epochs: float = 2
    learning_rate: float = 5.0e-5
    batch_size: int = 16

    def __post_init__(self):
        if self.epochs <= 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")


@dataclass
class TeacherConfig:
    model: str
    # `false`/`null` means the teacher is already trained on the task.
    fine_tune: FineTuneConfig | bool | None = None

    def __post_init__(self):
        if self.fine_tune is True:
            self.fine_tune = FineTuneConfig()
        elif self.fine_tune is False:
            self.fine_tune = None


def check_int4_group_size(value, what: str) -> None:
    """ValueError unless `value` is None, -1 (per output channel) or a power of two >= 8."""
    if value is None or value == -1:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value & (value - 1):
        raise ValueError(f"{what} must be a power of two >= 8 (weights per scale) or -1 (one "
                         f"scale per output channel), got {value!r}")


def check_int4_ratio(value, what: str) -> None:
    """ValueError unless `value` is None or a fraction in (0, 1]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{what} must be a fraction in (0, 1] (the share of weights in int4), "
                         f"got {value!r}")


def int4_options(group_size: int | None, ratio: float | None, data_aware: bool) -> dict:
    """The int4 exporter options that are set (export.json's `options`; unset ones are left
    out, so an export made without them is reused)."""
    return {key: value for key, value in (("int4_group_size", group_size), ("int4_ratio", ratio),
                                          ("int4_data_aware", data_aware or None))
            if value is not None}


@dataclass
class ExportConfig:
    formats: list[str] = field(default_factory=_default_formats)          # exporters found
    precisions: list[str] = field(default_factory=lambda: list(DEFAULT_PRECISIONS))
    # per format, the precisions to make instead of `precisions` (e.g. {tflite: [int8-dynamic]})
    format_precisions: dict[str, list[str]] | None = None
    calibration_samples: int = 100
    # Causal LMs, quantized precisions (int8, int4): the share of greedy tokens that must equal
    # the PyTorch source's, and how much higher the perplexity may be (defaults: the task's).
    min_token_agreement: float | None = None
    max_perplexity_increase: float | None = None
    # int4 weights: the group (block) size of one scale, or -1 for one per output channel;
    # null: each format's default (OpenVINO 128, halved until it divides the widths; ONNX and
    # TFLite 32).
    int4_group_size: int | None = None
    # int4 weights, OpenVINO only: the share of the weights in int4, the most sensitive rest in
    # int8 (null: all, 1.0), and data-aware compression (AWQ + scale estimation, sensitivity
    # from activations) on `calibration_samples` chunks of training text.
    int4_ratio: float | None = None
    int4_data_aware: bool = False

    def __post_init__(self):
        from edgekd.exporters import available_formats

        check_int4_group_size(self.int4_group_size, "export.int4_group_size")
        check_int4_ratio(self.int4_ratio, "export.int4_ratio")
        if not isinstance(self.int4_data_aware, bool):
            raise ValueError(f"export.int4_data_aware must be true or false, "
                             f"got {self.int4_data_aware!r}")

        if self.calibration_samples < 1:
            raise ValueError("calibration_samples must be >= 1")
        if self.min_token_agreement is not None and not 0 <= self.min_token_agreement <= 1:
            raise ValueError("export.min_token_agreement must be a fraction in [0, 1]")
        if self.max_perplexity_increase is not None and self.max_perplexity_increase < 0:
            raise ValueError("export.max_perplexity_increase must be >= 0 (0.1 = 10 %)")
        known = available_formats()
        for i, fmt in enumerate(self.formats):
            if fmt not in known:
                raise ValueError(f"export.formats[{i}]: unknown format '{fmt}' "
                                 f"(known: {', '.join(known)})")
        for fmt, precisions in (self.format_precisions or {}).items():
            if fmt not in self.formats:
                raise ValueError(f"export.format_precisions: '{fmt}' is not one of export.formats "
                                 f"({', '.join(self.formats) or 'none'})")
            if not isinstance(precisions, list):
                raise ValueError(f"export.format_precisions.{fmt} must be a list of precisions")
        self.check_precisions()

    def check_precisions(self, task=None) -> None:
        """ValueError unless every precision in `precisions` is made by some format and each
        format's `format_precisions` list only names precisions it makes: any model's, or with
        `task`, that task's (an int4 classifier, an int8-static LM are refused, not skipped)."""
        from edgekd.exporters import get_exporter, precisions_for

        def made(fmt: str) -> list:
            exporter = get_exporter(fmt)
            if task is not None:
                return list(precisions_for(exporter, task))
            return sorted({*exporter.PRECISIONS, *getattr(exporter, "LM_PRECISIONS", ())})

        kind, it, they = ((f" a {task.TASK} model in", "it does", "they do") if task is not None
                          else ("", "it exports", "they export"))
        any_format = sorted({p for f in self.formats for p in made(f)})
        for i, precision in enumerate(self.precisions):
            if precision not in any_format:
                raise ValueError(f"export.precisions[{i}]: no format of "
                                 f"{', '.join(self.formats) or '(none)'} exports{kind} '{precision}' "
                                 f"({they}: {', '.join(any_format)})")
        for fmt, precisions in (self.format_precisions or {}).items():
            for i, precision in enumerate(precisions):
                if precision not in made(fmt):
                    raise ValueError(f"export.format_precisions.{fmt}[{i}]: {fmt} does not "
                                     f"export{kind} '{precision}' ({it}: {', '.join(made(fmt))})")

    def options(self, precision: str) -> dict:
        """The exporter options this section sets for `precision` (what export.json records as
        `options`: a rerun with other options exports anew)."""
        if precision != "int4":
            return {}
        return int4_options(self.int4_group_size, self.int4_ratio, self.int4_data_aware)

    def jobs(self, task=None) -> list[tuple[str, str]]:
        """(format, precision) of every pair asked for that the format can export for `task`
        (OpenVINO's bf16 or int4 is skipped for the formats without it): `precisions` for each
        format, or the format's own list in `format_precisions`."""
        from edgekd.exporters import get_exporter, precisions_for

        chosen = self.format_precisions or {}
        return [(f, p) for f in self.formats for p in chosen.get(f, self.precisions)
                if p in precisions_for(get_exporter(f), task)]


@dataclass
class BenchConfig:
    targets: list[str] = field(default_factory=lambda: ["local"])
    threads: list[int] | None = None    # default: the target profile's `threads`, else [1]
    batch_size: int = 1
    seq_len: int | None = None          # default: data.max_length
    warmup: int = 10
    min_iterations: int = 50
    min_time_s: float = 5.0
    energy: str = "auto"
    repeats: int = 3                    # fresh-process measurements per artifact, interleaved
    # causal LMs (the generate scenario): prompt lengths in tokens and new tokens per prompt
    prompt_lengths: list[int] = field(default_factory=lambda: [64, 256])
    new_tokens: int = 32

    def __post_init__(self):
        if not self.prompt_lengths or any(not isinstance(n, int) or n < 1 for n in self.prompt_lengths):
            raise ValueError("bench.prompt_lengths must be a non-empty list of positive integers")
        if not isinstance(self.new_tokens, int) or self.new_tokens < 2:
            raise ValueError(f"bench.new_tokens must be an integer >= 2, got {self.new_tokens!r}")
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            raise ValueError(f"bench.repeats must be a positive integer, got {self.repeats!r}")
        if not self.targets:
            raise ValueError("bench.targets must name at least one target")
        if self.threads is not None and (not self.threads or any(t < 1 for t in self.threads)):
            raise ValueError("bench.threads must be a non-empty list of positive integers")
        if self.batch_size < 1 or self.warmup < 0 or self.min_iterations < 1 or self.min_time_s < 0:
            raise ValueError("batch_size and min_iterations must be >= 1, warmup and min_time_s >= 0")


@dataclass
class ReportConfig:
    # The accuracy a user will give up against the teacher (a fraction: 0.01 = one point). The
    # report recommends, per target, the fastest student artifact within it.
    accuracy_budget: float = 0.01
    # Causal LMs: how much higher an artifact's perplexity may be than its PyTorch source's on
    # the same held-out text (a fraction: 0.05 = 5 %); the fastest within it is recommended.
    perplexity_budget: float = 0.05

    def __post_init__(self):
        if not 0 <= self.perplexity_budget < 10:
            raise ValueError("report.perplexity_budget must be a fraction >= 0 (0.05 = 5 % "
                             "above the source's perplexity)")
        if not 0 <= self.accuracy_budget < 1:
            raise ValueError("report.accuracy_budget must be a fraction in [0, 1) "
                             "(0.01 = one accuracy point)")


@dataclass
class Recipe:
    name: str
    data: DataConfig
    teacher: TeacherConfig
    student: StudentConfig
    task: str = "text-classification"
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self):
        from edgekd.tasks import available_tasks, get_task

        if self.task not in available_tasks():
            raise ValueError(f"unknown task '{self.task}' (known: {', '.join(available_tasks())})")
        self.export.check_precisions(get_task(self.task))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (what is saved into the run folder)."""
        return dataclasses.asdict(self)

    @property
    def seq_len(self) -> int:
        """Sequence length used for export shapes and benchmarks."""
        return self.bench.seq_len or self.data.max_length


def builtin_recipe_path(name: str = DEFAULT_RECIPE, kind: str = "recipe") -> Path:
    """Path of a recipe (or, `kind="sweep"`, a sweep file) shipped inside the package
    (`edgekd/recipes/<name>.yaml`); EdgekdError listing the built-in ones of that kind."""
    folder = Path(__file__).parent / "recipes"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")
                       if p.stem.endswith("-sweep") == (kind == "sweep"))
        raise EdgekdError(f"no built-in {kind} named '{name}' (built-in: {', '.join(known)}; "
                          "or give a .yaml file)")
    return path


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Load and validate a recipe file (the built-in default when `path` is None)."""
    path = Path(path) if path is not None else builtin_recipe_path()
    if not path.is_file():
        raise EdgekdError(f"recipe file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgekdError(f"recipe {path} is not valid YAML: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EdgekdError(f"recipe {path} must be a mapping at the top level")
    for item in overrides or []:
        apply_override(data, item)
    return from_dict(Recipe, data)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise EdgekdError(f"--set expects KEY=VALUE, got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or child is False or child is True:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise EdgekdError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Save the resolved recipe as YAML (atomically)."""
    from edgekd.files import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def resolve_path(value: str) -> str:
    """Resolve `package:NAME/sub/path` to a folder inside an installed Python package.

    This is how the built-in recipe finds the packaged teacher and data without hard-coded
    paths. Any other value is returned unchanged (a local path or a Hugging Face id).
    """
    if not value.startswith("package:"):
        return value
    package, _, sub = value[len("package:"):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EdgekdError(f"Python package '{package}' is not installed (needed for '{value}'); "
                          f"pip install {package.replace('_', '-')}")
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)
