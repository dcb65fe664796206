"""Every export folder is a deployable bundle: the artifact plus what an app needs to use it.

Beside the artifact, `export.json` and `inputs.npz`, `write_bundle` adds
    tokenizer files   the source model's own (a student's vocabulary may be trimmed)
    config.json       the source model's config (optimum's loaders read model_type, id2label)
    labels.json       the label names in output order: labels.json[i] names logit i
    README.md         a model card: what it is, the input signature, sequence length, precision,
                      measured accuracy and parity, the runtime that verified it and a snippet
`open_bundle` reads one back for `edgekd predict`: the export record, the labels, the tokenizer,
and (in a packed bundle, `manifest.json`) a SHA-256 per file that must match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgekd.benchmarks.contracts import ContractError, ExportRecord
from edgekd.errors import EdgekdError

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
README_FILE = "README.md"
MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "edgekd.bundle-manifest/1"
# A folder holds a tokenizer when one of these is there (what AutoTokenizer reads first).
TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json")


def write_bundle(folder: Path, model_dir: Path, record: dict) -> None:
    """Add the tokenizer files, config.json, labels.json and README.md to the export `folder`
    (the staging folder, before it is moved into place) for the export `record` of `model_dir`."""
    import shutil

    from edgekd.files import write_json_atomic, write_text_atomic

    folder, model_dir = Path(folder), Path(model_dir)
    has_tokenizer = save_tokenizer(model_dir, folder)
    shutil.copyfile(model_dir / CONFIG_FILE, folder / CONFIG_FILE)
    labels = label_names(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
    write_json_atomic(folder / LABELS_FILE, labels)
    write_text_atomic(folder / README_FILE,
                      model_card(folder, record, labels, input_signature(folder, record),
                                 has_tokenizer))


def has_bundle(folder: Path) -> bool:
    """Whether an export folder already holds the bundle files (exports made before bundles
    existed do not). README.md is written last, so a bundle cut short is not taken as one."""
    folder = Path(folder)
    return all((folder / f).is_file() for f in (CONFIG_FILE, LABELS_FILE, README_FILE))


def has_tokenizer(folder: Path) -> bool:
    """Whether `folder` holds tokenizer files."""
    return any((Path(folder) / f).is_file() for f in TOKENIZER_MARKERS)


def needs_bundle(folder: Path, model_dir: Path) -> bool:
    """Whether a finished export folder lacks its bundle, or lacks the tokenizer its source
    model has now (saved there after the export): then `write_bundle` completes it."""
    return not has_bundle(folder) or (has_tokenizer(model_dir) and not has_tokenizer(folder))


def save_tokenizer(model_dir: Path, folder: Path) -> bool:
    """Write the source model's tokenizer into `folder` (save_pretrained: the full set of files
    AutoTokenizer needs, whatever the tokenizer type). False when the source has none."""
    if not has_tokenizer(model_dir):
        return False
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot read the tokenizer of {model_dir}: {exc}") from None
    tokenizer.save_pretrained(folder)
    return True


def label_names(config: dict) -> list[str]:
    """The label names in logit order, from a config's id2label (LABEL_i when it has none)."""
    id2label = config.get("id2label") or {}
    count = int(config.get("num_labels") or len(id2label) or 0)
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(count)]


def input_signature(folder: Path, record: dict) -> list[dict]:
    """[{name, shape, dtype}] of the artifact's inputs, read from the artifact through its
    runtime adapter (the names and dtypes it really takes: TFLite files store int32 ids);
    the record's input names as int64 when the artifact does not open."""
    import numpy as np

    from edgekd.benchmarks import runtimes

    batch = record.get("batch_size") or "batch"
    shape = [batch, int(record.get("seq_len") or 0)]
    try:
        adapter, _ = runtimes.open_adapter(str(Path(folder) / record["artifact"]),
                                           precision=record["precision"], fmt=record["format"])
        inputs = {name: np.dtype(dtype).name for name, dtype in adapter.inputs.items()}
    except (runtimes.ArtifactError, runtimes.RuntimeMissing, KeyError, TypeError):
        inputs = {name: "int64" for name in record.get("input_names") or []}
    return [{"name": name, "shape": shape, "dtype": dtype} for name, dtype in inputs.items()]


# The minimal inference code per runtime: tokenizer from the folder, the artifact, logits.
_SNIPPETS = {
    "onnxruntime": """import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(".")
session = ort.InferenceSession("{artifact}", providers=["CPUExecutionProvider"])
enc = tok(["some text"], padding="max_length", truncation=True, max_length={seq_len}, return_tensors="np")
names = {{i.name for i in session.get_inputs()}}
logits = session.run(None, {{k: v.astype(np.int64) for k, v in enc.items() if k in names}})[0]

# or with optimum:
from optimum.onnxruntime import ORTModelForSequenceClassification
model = ORTModelForSequenceClassification.from_pretrained(".")""",
    "openvino": """import numpy as np, openvino as ov
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(".")
compiled = ov.Core().compile_model("{artifact}", "CPU", {settings})
enc = tok(["some text"], padding="max_length", truncation=True, max_length={seq_len}, return_tensors="np")
names = {{p.get_any_name() for p in compiled.inputs}}
logits = compiled({{k: v.astype(np.int64) for k, v in enc.items() if k in names}})[compiled.outputs[0]]

# or with optimum-intel:
from optimum.intel import OVModelForSequenceClassification
model = OVModelForSequenceClassification.from_pretrained(
    ".", ov_config={{"INFERENCE_PRECISION_HINT": "{hint}"}})""",
    "ai_edge_litert": """import numpy as np
from ai_edge_litert.interpreter import Interpreter   # or tflite_runtime / tensorflow.lite
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(".")
interp = Interpreter(model_path="{artifact}", num_threads=1)
runner = interp.get_signature_runner()
enc = tok(["some text"], padding="max_length", truncation=True, max_length={seq_len}, return_tensors="np")
inputs = runner.get_input_details()   # {{name: {{"dtype", "shape", ...}}}}
out = runner(**{{k: v.astype(inputs[k]["dtype"]) for k, v in enc.items() if k in inputs}})
logits = next(iter(out.values()))   # one row per text (this file takes batch {batch})""",
}


def model_card(folder: Path, record: dict, labels: list[str], signature: list[dict],
               has_tokenizer: bool) -> str:
    """The bundle's README.md for the export `folder`, generated from its export record."""
    parity = record.get("parity") or {}
    settings = record.get("runtime_settings") or {}
    seq_len = record.get("seq_len")
    lines = [
        f"# {record['name']}",
        "",
        f"A {record.get('task') or 'text-classification'} model exported by edgekd to "
        f"**{record['format']}** at **{record['precision']}** from `{record.get('source_model')}`.",
        f"Status: **{record.get('status')}**" + (f" ({record['error']})" if record.get("error") else "")
        + ".",
        "",
        "## Files",
        f"- `{record['artifact']}`: the model",
        "- tokenizer files (`tokenizer.json`, `tokenizer_config.json`, ...): the source model's own"
        if has_tokenizer else "- no tokenizer: the source model folder had none",
        f"- `{CONFIG_FILE}`: the source model's config; `{LABELS_FILE}`: label names, "
        "`labels[i]` names output column i",
        "- `export.json`: how it was made and verified; `inputs.npz`: the tokenized test examples "
        "it was verified on",
        "",
        "## Inputs and output",
        "| input | shape | dtype |",
        "|---|---|---|",
        *[f"| `{s['name']}` | [{', '.join(map(str, s['shape']))}] | {s['dtype']} |"
          for s in signature],
        "",
        f"Sequence length {seq_len}: tokenize with `padding=\"max_length\", truncation=True, "
        f"max_length={seq_len}` (longer text is cut to {seq_len} tokens). "
        + ("The batch dimension is dynamic." if not record.get("batch_size") else
           f"The file has static shapes: exactly batch {record['batch_size']}."),
        f"Output: float logits of shape [batch, {len(labels)}] in the order of `{LABELS_FILE}`: "
        + ", ".join(f"{i} = {name}" for i, name in enumerate(labels)) + ".",
        "",
        "## Measured",
        f"- accuracy on the eval split: {_number(record.get('accuracy'))}",
        f"- parity with the PyTorch source on {parity.get('n', '?')} examples: top-1 agreement "
        f"{_number(parity.get('top1_agreement'))} (required {_number(parity.get('min_agreement'))}), "
        f"max abs logit difference {_number(parity.get('max_abs_diff'), '.3g')}",
        f"- verified with {record.get('runtime')} {record.get('runtime_version')}, settings "
        f"`{json.dumps(settings, sort_keys=True)}`",
        f"- artifact size: {record.get('size_bytes')} bytes",
        "",
        "## Run it",
        "```",
        "edgekd predict . \"some text\"      # same runtime and settings as above",
        "```",
        "```python",
        _snippet(record, settings),
        "```",
        "",
    ]
    return "\n".join(lines)


def _snippet(record: dict, settings: dict) -> str:
    template = _SNIPPETS.get(record.get("runtime") or "", _SNIPPETS["ai_edge_litert"]
                             if record["format"] == "tflite" else "# no snippet for this runtime")
    return template.format(artifact=record["artifact"], seq_len=record.get("seq_len"),
                           settings=json.dumps(settings, sort_keys=True),
                           hint=settings.get("INFERENCE_PRECISION_HINT", "f32"),
                           batch=record.get("batch_size") or "any")


def _number(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


@dataclass
class Bundle:
    """An export folder read back: its record, artifact path, labels and tokenizer folder."""

    folder: Path
    record: dict
    artifact: Path
    labels: list[str]

    def tokenizer(self):
        """The bundle's own tokenizer (transformers' AutoTokenizer)."""
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.folder)
        except (OSError, ValueError) as exc:
            raise EdgekdError(f"{self.folder}: the tokenizer files do not load: {exc}") from None


def open_bundle(path: str | Path) -> Bundle:
    """Read the export folder `path` (or the folder of the artifact file `path`): check its
    manifest when it has one, that the export is ok, and that it holds a tokenizer."""
    path = Path(path)
    if not path.exists():
        raise EdgekdError(f"not found: {path}")
    folder = path if path.is_dir() else path.parent
    export_file = folder / "export.json"
    if not export_file.is_file():
        raise EdgekdError(f"{folder} has no export.json: give an export folder "
                          "(runs/<run>/exports/<name>/) or an artifact inside one")
    check_manifest(folder)
    try:
        record = ExportRecord.from_dict(json.loads(export_file.read_text(encoding="utf-8")),
                                        str(export_file)).to_dict()
    except (OSError, ValueError, ContractError) as exc:
        raise EdgekdError(f"{export_file} is unreadable: {exc}") from None
    if record["status"] != "ok":
        raise EdgekdError(f"{folder}: the export failed ({record.get('error') or 'no reason'}); "
                          "there is nothing verified to run")
    if not has_tokenizer(folder) or not has_bundle(folder):
        why = ("its source model folder had none: save the tokenizer there "
               "(tokenizer.save_pretrained) and" if has_bundle(folder)
               else "exported before bundles existed:")
        raise EdgekdError(f"{folder} has no tokenizer ({why} rerun the export: `edgekd run "
                          f"RECIPE` for a run, or `edgekd export {record.get('source_model')} "
                          f"--format {record['format']} --precision {record['precision']} --out "
                          f"{folder}`; the artifact is not exported again)")
    labels = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
    return Bundle(folder, record, folder / record["artifact"], [str(x) for x in labels])


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(folder: Path) -> dict:
    """`manifest.json` for `folder`: a SHA-256 per file (paths relative to it), itself excluded."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    return {"schema": MANIFEST_SCHEMA,
            "files": {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}}


def check_manifest(folder: Path) -> None:
    """When `folder` has a manifest.json, every file it lists must be there with its SHA-256;
    EdgekdError naming the first that is not (a corrupt or modified bundle)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgekdError(f"{path} is unreadable: {exc}") from None
    for name, expected in listed.items():
        file = Path(folder) / name
        if not file.is_file():
            raise EdgekdError(f"{folder}: {name} is listed in {MANIFEST_FILE} but missing")
        if sha256_file(file) != expected:
            raise EdgekdError(f"{folder}: checksum mismatch for {name} (the bundle is corrupt or "
                              "was modified after packing)")
