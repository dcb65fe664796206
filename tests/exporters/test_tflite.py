"""TFLite exporter: real litert-torch conversion, real ai-edge-quantizer recipes, real interpreter.

One float conversion per session (about 10 s on 2 cores); fp16 and int8-dynamic are quantized
from that file, int8-static goes through the whole `export` path with calibration.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgekdError

pytest.importorskip("litert_torch", reason="litert-torch is not installed (edgekd[tflite])")
pytest.importorskip("ai_edge_quantizer",
                    reason="ai-edge-quantizer is not installed (edgekd[tflite])")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (edgekd[tflite])")

from edgekd.benchmarks import runtime_tflite, runtimes  # noqa: E402
from edgekd.exporters import tflite, tflite_quant  # noqa: E402
from edgekd.tasks import get_task  # noqa: E402
from tiny import make_tiny_bert, vocabulary  # noqa: E402

SEQ_LEN = 16
TASK = get_task("text-classification")


def load(path: Path, threads: int = 1):
    """The artifact through its runtime adapter, as verification runs it: rows -> logits."""
    adapter, _ = runtimes.open_adapter(str(path), threads=threads)
    return lambda feeds: runtimes.run_outputs(adapter, feeds)


def generated_inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n rows of random ids with a random amount of right padding (like tokenizer output)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, len(vocabulary()), size=(n, SEQ_LEN))
    lengths = rng.integers(4, SEQ_LEN + 1, size=n)
    mask = (np.arange(SEQ_LEN)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = 2  # [CLS]
    ids = np.where(mask == 1, ids, 0)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids, dtype=np.int64)}


def torch_logits(model_dir: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()


@pytest.fixture(scope="session")
def weighty_model_dir(tmp_path_factory) -> Path:
    """Tiny BERT whose size is mostly FC weights (width 128), so int8 shrinks it clearly."""
    return make_tiny_bert(tmp_path_factory.mktemp("tflite-model") / "bert", hidden=128,
                          heads=2, intermediate=512)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, weighty_model_dir) -> dict[str, tuple[Path, dict]]:
    """precision -> (model.tflite, what `export` returned or the quantizer's settings)."""
    root = tmp_path_factory.mktemp("tflite-exports")
    out = {}
    (root / "fp32").mkdir()
    info = tflite.export(weighty_model_dir, root / "fp32", "fp32", seq_len=SEQ_LEN,
                         calibration=None, task=TASK)
    out["fp32"] = (root / "fp32" / info["artifact"], info)
    for precision in ("fp16", "int8-dynamic"):
        path = root / f"{precision}.tflite"
        out[precision] = (path, tflite_quant.quantize(out["fp32"][0], path, precision))
    (root / "int8-static").mkdir()
    info = tflite.export(weighty_model_dir, root / "int8-static", "int8-static", seq_len=SEQ_LEN,
                         calibration=generated_inputs(16, seed=1), task=TASK)
    out["int8-static"] = (root / "int8-static" / info["artifact"], info)
    return out


def test_export_records_fixed_shape_and_tools(artifacts):
    path, info = artifacts["fp32"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.tflite"]
    assert info["artifact"] == "model.tflite" and info["batch_size"] == 1
    assert info["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert info["settings"]["seq_len"] == SEQ_LEN
    assert info["settings"]["input_dtype"] == "int32"  # litert-torch's default x64 downcast
    assert {"litert-torch", "ai-edge-litert", "torch"} <= set(info["tools"])
    static = artifacts["int8-static"][1]
    assert static["settings"]["quantizer_recipe"].startswith("static_wi8_ai8")
    assert static["settings"]["calibration_samples"] == 16
    assert "ai-edge-quantizer" in static["tools"]


@pytest.mark.parametrize("precision", tflite.PRECISIONS)
def test_each_precision_loads_and_runs_a_batch(artifacts, precision):
    run = load(artifacts[precision][0], threads=1)
    logits = run(generated_inputs(5))
    assert logits.shape == (5, 3) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    # rows are independent: row 2 alone gives what it gave inside the batch
    single = run({k: v[2:3] for k, v in generated_inputs(5).items()})
    np.testing.assert_allclose(single[0], logits[2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-5), ("fp16", 1e-3)])
def test_float_logits_agree_with_pytorch(artifacts, weighty_model_dir, precision, atol):
    feeds = generated_inputs(64, seed=3)
    expected = torch_logits(weighty_model_dir, feeds)
    got = load(artifacts[precision][0])(feeds)
    assert np.abs(got - expected).max() < atol
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.99


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static"])
def test_int8_stays_near_pytorch_and_is_smaller(artifacts, weighty_model_dir, precision):
    feeds = generated_inputs(32, seed=4)
    expected = torch_logits(weighty_model_dir, feeds)
    got = load(artifacts[precision][0])(feeds)
    spread = np.abs(expected).max()
    assert np.abs(got - expected).max() < 0.1 * spread
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    fp32_size = artifacts["fp32"][0].stat().st_size
    assert fp32_size / artifacts[precision][0].stat().st_size >= 2.5


def test_fp16_halves_the_weights(artifacts):
    ratio = artifacts["fp32"][0].stat().st_size / artifacts["fp16"][0].stat().st_size
    assert ratio >= 1.6


def test_missing_token_type_ids_means_zeros(artifacts):
    run = load(artifacts["fp32"][0])
    feeds = generated_inputs(3)
    without = {k: v for k, v in feeds.items() if k != "token_type_ids"}
    np.testing.assert_array_equal(run(without), run(feeds))


def test_wrong_sequence_length_is_a_clear_error(artifacts):
    run = load(artifacts["fp32"][0])
    feeds = {k: np.concatenate([v, v], axis=1) for k, v in generated_inputs(2).items()}
    with pytest.raises(runtimes.ArtifactError, match=rf"exported for \(1, {SEQ_LEN}\)"):
        run(feeds)


def test_fixed_batch_file_refuses_another_batch_size(artifacts):
    """litert-torch bakes batch 1 into the graph: a batch of 4 is refused, not resized."""
    adapter, _ = runtimes.open_adapter(str(artifacts["fp32"][0]))
    assert adapter.fixed_batch == 1
    with pytest.raises(runtimes.ArtifactError, match="exported for batch 1.*cannot run batch 4"):
        adapter.prepare(generated_inputs(4))


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_file_is_a_clear_error(artifacts, tmp_path, keep):
    data = artifacts["fp32"][0].read_bytes()
    broken = tmp_path / "model.tflite"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(runtimes.ArtifactError, match=r"^ai_edge_litert cannot open .*model\.tflite"):
        load(broken)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(runtimes.ArtifactError, match="cannot open .*nothing.tflite"):
        load(tmp_path / "nothing.tflite")


def test_int8_static_without_calibration_is_refused_up_front(weighty_model_dir, tmp_path):
    with pytest.raises(EdgekdError, match="int8-static needs calibration"):
        tflite.export(weighty_model_dir, tmp_path, "int8-static", seq_len=SEQ_LEN, calibration=None, task=TASK)
    assert list(tmp_path.iterdir()) == []


def test_unknown_precision_is_refused(weighty_model_dir, tmp_path):
    with pytest.raises(EdgekdError, match="unknown precision 'int4'"):
        tflite.export(weighty_model_dir, tmp_path, "int4", seq_len=SEQ_LEN, calibration=None, task=TASK)


def test_calibration_with_other_seq_len_is_refused(artifacts, tmp_path):
    calibration = {k: np.concatenate([v, v], axis=1) for k, v in generated_inputs(4).items()}
    with pytest.raises(EdgekdError, match="seq_len must match"):
        tflite_quant.quantize(artifacts["fp32"][0], tmp_path / "q.tflite", "int8-static",
                              calibration)
    assert not (tmp_path / "q.tflite").exists()


def test_unconvertible_operator_is_named(tmp_path):
    import torch

    class QR(torch.nn.Module):  # litert-torch has no lowering for linalg_qr
        def forward(self, input_ids):
            x = input_ids.float()
            return torch.linalg.qr(x @ x.T)[0]

    with pytest.raises(EdgekdError, match=r"conversion failed at operator aten\.linalg_qr"):
        tflite.convert(QR().eval(), ("input_ids",), 8, tmp_path / "qr.tflite")


def _alias_module(monkeypatch, name: str, **attributes) -> None:
    """Register an importable module `name` (and its parents) exposing `attributes`."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        module = types.ModuleType(".".join(parts[:i]))
        if i == len(parts):
            module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        if i > 1:
            setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], module)


def test_interpreter_fallback_order(monkeypatch, artifacts):
    from ai_edge_litert.interpreter import Interpreter

    assert runtime_tflite.interpreter_class()[:2] == (Interpreter, "ai_edge_litert")
    # Without ai_edge_litert (None in sys.modules makes the import fail), tflite_runtime is
    # next; it is given the same interpreter class, as a board's tflite_runtime would offer.
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(runtimes.RuntimeMissing, match="ai_edge_litert.*tflite_runtime.*tensorflow"):
        runtime_tflite.interpreter_class()
    assert "no TFLite interpreter" in tflite.runtime_missing()

    tf = types.SimpleNamespace(Interpreter=Interpreter)
    _alias_module(monkeypatch, "tensorflow", lite=tf)
    assert runtime_tflite.interpreter_class()[:2] == (Interpreter, "tensorflow")
    _alias_module(monkeypatch, "tflite_runtime.interpreter", Interpreter=Interpreter)
    assert runtime_tflite.interpreter_class()[:2] == (Interpreter, "tflite_runtime")
    # load really goes through the chosen runtime
    assert load(artifacts["fp32"][0])(generated_inputs(1)).shape == (1, 3)


def test_runtime_missing(monkeypatch):
    assert tflite.runtime_missing() is None
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    assert "litert-torch is not installed" in tflite.runtime_missing()


def test_model_without_token_type_ids(tmp_path):
    """DistilBERT takes no token_type_ids: the file has two inputs; load ignores a third feed."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(vocabulary()), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
        max_position_embeddings=32, num_labels=2))
    model.save_pretrained(tmp_path / "distil")
    info = tflite.export(tmp_path / "distil", tmp_path, "fp32", seq_len=SEQ_LEN, calibration=None, task=TASK)
    assert info["input_names"] == ["input_ids", "attention_mask"]
    feeds = generated_inputs(4)
    got = load(tmp_path / info["artifact"])(feeds)
    with torch.no_grad():
        expected = model.eval()(input_ids=torch.from_numpy(feeds["input_ids"]),
                                attention_mask=torch.from_numpy(feeds["attention_mask"])).logits
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-5)
