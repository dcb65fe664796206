"""`edgekd predict`: classify text with an exported bundle, the way the runner runs it.

The bundle's own tokenizer encodes the text at the exported sequence length; the artifact runs
through the benchmark's runtime adapter (`edgekd.benchmarks.runtimes`) opened with the settings
export.json records, so a prediction comes from exactly what was verified and measured. Text
longer than the sequence length is truncated to it (a note on stderr says which); empty text is
refused. Runs on this machine (running on a target through the runner is not built yet).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError

# The threads verification used (export.json's runtime_settings were recorded at 1 thread).
THREADS = 1


class Predictor:
    """An opened bundle: `predict(texts, top_k)` -> one result per text."""

    def __init__(self, path: str | Path):
        from edgekd.benchmarks import runtimes
        from edgekd.exporters.bundle import open_bundle
        from edgekd.tasks import get_task

        self.bundle = open_bundle(path)
        record = self.bundle.record
        self.task = get_task(record.get("task"))
        if not hasattr(self.task, "label_ids"):
            raise EdgekdError(f"predict handles classifiers; {record['name']} is a "
                              f"{self.task.TASK} model")
        self.seq_len = int(record["seq_len"])
        self.encoder = fast_encoder(self.bundle.folder, self.seq_len) or HFEncoder(
            self.bundle.tokenizer(), self.seq_len)
        try:
            self.adapter, self.settings = runtimes.open_adapter(
                str(self.bundle.artifact), precision=record["precision"], threads=THREADS,
                fmt=record["format"])
        except runtimes.RuntimeMissing as exc:
            raise EdgekdError(str(exc)) from None
        except runtimes.ArtifactError as exc:
            raise EdgekdError(f"{self.bundle.artifact}: {exc}") from None
        recorded = record.get("runtime_settings")
        if recorded is not None and recorded != self.settings:
            print(f"edgekd predict: note: runtime settings {self.settings} differ from the "
                  f"verified {recorded} (a different edgekd version?)", file=sys.stderr)

    def encode(self, texts: list[str]) -> tuple[dict, list[int]]:
        """(model inputs at the exported sequence length, token count of each text before
        truncation)."""
        for i, text in enumerate(texts, 1):
            if not text.strip():
                raise EdgekdError(f"text {i} is empty: give some text to classify")
        inputs, lengths = self.encoder(list(texts))
        names = self.bundle.record.get("input_names") or list(inputs)
        return {k: v for k, v in inputs.items() if k in names}, lengths

    def logits(self, inputs: dict) -> np.ndarray:
        """The artifact's logits for encoded `inputs`, through the runtime adapter."""
        from edgekd.benchmarks import runtimes

        try:
            return runtimes.run_outputs(self.adapter, inputs)
        except runtimes.ArtifactError as exc:
            raise EdgekdError(str(exc)) from None

    def predict(self, texts: list[str], top_k: int = 3) -> list[dict]:
        """For each text: its label, the top-k labels with probabilities, its token count and
        whether it was truncated to the sequence length."""
        inputs, lengths = self.encode(texts)
        logits = self.logits(inputs)
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        probs = shifted / shifted.sum(-1, keepdims=True)
        labels = self.bundle.labels
        results = []
        for text, row, length in zip(texts, probs, lengths):
            order = np.argsort(-row, kind="stable")[:max(1, top_k)]
            results.append({
                "text": text, "label": _name(labels, int(order[0])),
                "top_k": [{"label": _name(labels, int(i)), "probability": float(row[i])}
                          for i in order],
                "tokens": length, "truncated": length > self.seq_len})
        return results


class HFEncoder:
    """Encoding with the transformers tokenizer, exactly as export and verification encode
    (`edgekd.data.encode`): for bundles whose tokenizer has no tokenizer.json."""

    def __init__(self, tokenizer, seq_len: int):
        self.tokenizer, self.seq_len = tokenizer, seq_len

    def __call__(self, texts: list[str]) -> tuple[dict, list[int]]:
        from edgekd.data import encode

        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        return encode(self.tokenizer, texts, self.seq_len), lengths


class FastEncoder:
    """The same encoding from tokenizer.json with the `tokenizers` library alone: importing
    transformers (and with it torch) is most of a cold start, ~10 s of ~11 s on a small CPU.
    Padding to `seq_len` with the tokenizer's pad token and side, truncation to `seq_len`:
    what `padding="max_length", truncation=True` does for one text (tests compare the two)."""

    def __init__(self, tokenizer, seq_len: int, pad_token: str, pad_id: int, side: str):
        self.tokenizer, self.seq_len = tokenizer, seq_len
        self.padding = {"length": seq_len, "pad_id": pad_id, "pad_token": pad_token,
                        "direction": side}

    def __call__(self, texts: list[str]) -> tuple[dict, list[int]]:
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(texts)]
        self.tokenizer.enable_truncation(max_length=self.seq_len)
        self.tokenizer.enable_padding(**self.padding)
        encoded = self.tokenizer.encode_batch(texts)
        inputs = {"input_ids": [e.ids for e in encoded],
                  "attention_mask": [e.attention_mask for e in encoded],
                  "token_type_ids": [e.type_ids for e in encoded]}
        return {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}, lengths


def fast_encoder(folder: Path, seq_len: int) -> FastEncoder | None:
    """A FastEncoder for the bundle's tokenizer.json, or None (no tokenizer.json, no pad token,
    or `tokenizers` missing): then the transformers tokenizer is used."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    try:
        config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    except Exception:  # unreadable, or a format `tokenizers` does not know (it raises plain
        return None    # Exception): the transformers tokenizer then reads the folder
    pad = config.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
    if pad_id is None:
        return None
    return FastEncoder(tokenizer, seq_len, pad, pad_id, config.get("padding_side") or "right")


def _name(labels: list[str], index: int) -> str:
    return labels[index] if index < len(labels) else f"LABEL_{index}"


def read_texts(texts: list[str], file: str | None) -> list[str]:
    """The texts from the command line, then one per non-blank line of `file`."""
    texts = list(texts)
    if file:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgekdError(f"cannot read texts from {file}: {exc}") from None
        texts += [line for line in lines if line.strip()]
        if not any(line.strip() for line in lines):
            raise EdgekdError(f"{file} holds no text (one text per line)")
    if not texts:
        raise EdgekdError("no text given: pass TEXT arguments or --file texts.txt")
    return texts


def predict_command(args) -> int:
    """Handler of `edgekd predict`."""
    if args.target not in (None, "local"):
        raise EdgekdError("predict runs on this machine only for now; copy the bundle (edgekd "
                          "pack) to the device and run `edgekd predict` there (it needs edgekd "
                          "installed), or the snippet in the bundle's README.md (it needs "
                          "the runtime and transformers' tokenizer)")
    if args.top_k < 1:
        raise EdgekdError(f"--top-k must be at least 1 (got {args.top_k})")
    texts = read_texts(args.texts, args.file)
    predictor = Predictor(args.artifact)
    results = predictor.predict(texts, args.top_k)
    record = predictor.bundle.record
    for i, result in enumerate(results, 1):
        if result["truncated"]:
            print(f"edgekd predict: note: text {i} has {result['tokens']} tokens; it was "
                  f"truncated to the exported sequence length {predictor.seq_len}",
                  file=sys.stderr)
    if args.json:
        print(json.dumps({"artifact": record["name"], "format": record["format"],
                          "precision": record["precision"], "runtime": predictor.adapter.runtime,
                          "runtime_version": str(predictor.adapter.version),
                          "runtime_settings": predictor.settings, "seq_len": predictor.seq_len,
                          "predictions": results}, indent=1))
        return 0
    for result in results:
        shown = result["text"] if len(result["text"]) <= 60 else result["text"][:57] + "..."
        print(f"{result['label']}\t{shown}")
        for item in result["top_k"]:
            print(f"  {item['probability']:.4f}  {item['label']}")
    return 0
