"""OpenVINO causal-LM export: a stateful IR with its KV cache (optimum-intel), NNCF int8/int4
weights, and the runtime adapter's Generator (no torch), checked against the PyTorch Generator
on tiny Llama (GQA) and GPT-2 models trained for a few steps (so their greedy tokens vary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny_lm import greedy_without_torch, save_tiny_lm, sentence


KINDS = ("llama", "gpt2")
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int4")
# fp16 and int8 do not depend on the architecture (one cast, one data-free pass): the Llama
# covers them, and GPT-2 (another attention, MLP width and cache layout) gets fp32 and int4.
EXPORTS = {"llama": PRECISIONS, "gpt2": ("fp32", "int4")}
NEW_TOKENS = 16
CONTEXT = 64
# Exported through export_artifact (verified, bundled); the others by the exporter module alone.
FULL_EXPORTS = {("llama", "fp32"), ("llama", "int4")}
# export.int4_group_size set for one of them (the others take the format's default)
OPTIONS = {("gpt2", "int4"): {"int4_group_size": 16}}
PROMPTS = ("the", "cat sat on a mat while",
           "dogs ran far away from big red cars and small birds sang")


def train_briefly(folder: Path, steps: int = 60) -> Path:
    """A few steps on the generated sentences: a random-init tiny LM repeats its last input
    token forever, which would make token parity pass whatever the KV cache does."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(0)
    text = " ".join(sentence(rng) for _ in range(300))
    ids = torch.tensor(AutoTokenizer.from_pretrained(folder)(text)["input_ids"])
    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        batch = torch.stack([ids[s:s + 32] for s in torch.randint(0, len(ids) - 33, (8,))])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm_exports(tmp_path_factory):
    """{kind: model folder}, {(kind, precision): IR path}, {(kind, precision): export record}:
    each model in each precision exported once for the module."""
    from edgekd.exporters import export_artifact, openvino
    from edgekd.tasks import causal_lm

    root = tmp_path_factory.mktemp("ov-lm")
    models = {kind: train_briefly(save_tiny_lm(root / kind, kind=kind, layers=2)) for kind in KINDS}
    paths, records = {}, {}
    for kind in KINDS:
        for precision in EXPORTS[kind]:
            out = root / f"{kind}-{precision}"
            if (kind, precision) in FULL_EXPORTS:
                # fp32 on the task's generated prompts (random ids); int4 on text like the
                # training text: on random ids the tiny model's int4 weights keep only ~45% of
                # its greedy tokens (near-tied logits), on text all of them
                prompts_in = None if precision == "fp32" else text_inputs(models[kind])
                record = export_artifact(models[kind], "openvino", precision, out, role="student",
                                         seq_len=CONTEXT, eval_inputs=prompts_in, task=causal_lm)
            else:
                out.mkdir()
                record = openvino.export(models[kind], out, precision, seq_len=CONTEXT,
                                         calibration=None, task=causal_lm,
                                         options=OPTIONS.get((kind, precision)))
            paths[(kind, precision)] = out / record["artifact"]
            records[(kind, precision)] = record
    return models, paths, records


def text_inputs(model_dir: Path, rows: int = 6) -> dict:
    """Left-padded prompts (input_ids, attention_mask) of generated sentences."""
    import random

    from transformers import AutoTokenizer

    from edgekd.tasks.causal_lm import pad_batch

    tokenizer, rng = AutoTokenizer.from_pretrained(model_dir), random.Random(5)
    rows_ids = [tokenizer(" ".join(sentence(rng) for _ in range(3)))["input_ids"][:CONTEXT // 2]
                for _ in range(rows)]
    ids, mask = pad_batch(rows_ids, tokenizer.pad_token_id, left=True)
    return {"input_ids": ids, "attention_mask": mask}


def prompts(model_dir: Path) -> list[np.ndarray]:
    """Three prompts of different lengths, tokenized by the model's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [np.array(tokenizer(text)["input_ids"], dtype=np.int64) for text in PROMPTS]


def generate(generator, model_dir: Path) -> np.ndarray:
    """Greedy tokens [3, NEW_TOKENS] of the prompts through the shared greedy loop."""
    from edgekd.benchmarks import runtimes

    return np.stack([runtimes.greedy(generator, ids, NEW_TOKENS).tokens
                     for ids in prompts(model_dir)])


def torch_tokens(model_dir: Path) -> tuple[np.ndarray, object]:
    from edgekd.benchmarks import runtime_pytorch

    reference = runtime_pytorch.Generator(str(model_dir), runtime_pytorch.settings("fp32", 1))
    return generate(reference, model_dir), reference


def ov_generator(path: Path, precision: str):
    from edgekd.benchmarks import runtimes

    generator, _ = runtimes.open_generator(str(path), precision=precision, threads=1)
    return generator


@pytest.mark.parametrize("kind", KINDS)
def test_fp32_generates_the_pytorch_tokens_and_logits(lm_exports, kind):
    from edgekd.benchmarks import runtimes

    models, paths, records = lm_exports
    expected, reference = torch_tokens(models[kind])
    generator = ov_generator(paths[(kind, "fp32")], "fp32")
    assert generator.vocab_size == reference.vocab_size
    np.testing.assert_array_equal(generate(generator, models[kind]), expected)
    # the prefill gives every prompt position, equal to PyTorch's logits
    ids = prompts(models[kind])[2]
    np.testing.assert_allclose(runtimes.sequence_logits(generator, ids),
                               runtimes.sequence_logits(reference, ids), atol=1e-4)
    # a new prefill starts from an empty cache: the same prompt gives the same logits again
    first = generator.prefill(ids)
    generator.decode(3)
    np.testing.assert_array_equal(generator.prefill(ids), first)
    settings = records[(kind, "fp32")]["settings"]
    assert settings["kv_cache"] == "stateful" and settings["context"] == CONTEXT
    assert settings["weights"] == "fp32" and settings["kv_cache_precision"] == "f32"


@pytest.mark.parametrize("kind", KINDS)
def test_last_logits_only_prefill_returns_the_last_row_and_generates_the_same(lm_exports, kind):
    from edgekd.benchmarks import runtimes

    models, paths, _ = lm_exports
    path = paths[(kind, "fp32")]
    full = ov_generator(path, "fp32")
    last, _ = runtimes.open_generator(str(path), precision="fp32", threads=1,
                                      last_logits_only=True)
    ids = prompts(models[kind])[2]
    assert len(ids) > 1
    every, final = full.prefill(ids), last.prefill(ids)
    assert every.shape == (len(ids), full.vocab_size) and final.shape == (1, full.vocab_size)
    np.testing.assert_allclose(final[0], every[-1], atol=1e-4)
    # every prompt position still entered the cache: the next steps match too
    np.testing.assert_allclose(last.decode(5), full.decode(5), atol=1e-4)
    np.testing.assert_array_equal(generate(last, models[kind]), generate(full, models[kind]))


@pytest.mark.parametrize("kind", KINDS)
def test_lower_precisions_generate_valid_tokens(lm_exports, kind):
    models, paths, records = lm_exports
    expected, _ = torch_tokens(models[kind])
    for precision in EXPORTS[kind][1:]:
        generator = ov_generator(paths[(kind, precision)], precision)
        got = generate(generator, models[kind])
        assert got.shape == expected.shape and got.dtype == np.int64
        assert ((got >= 0) & (got < generator.vocab_size)).all()
        if precision == "fp16":
            assert (got == expected).mean() >= 0.9, precision
    int4 = records[(kind, "int4")]["settings"]
    # hidden 32, MLP 64 (Llama) / 128 (GPT-2): 128 does not divide 32, so the default group is
    # 32 (GPT-2's asks for 16)
    group = OPTIONS.get((kind, "int4"), {}).get("int4_group_size", 32)
    assert (int4["mode"], int4["group_size"], int4["ratio"]) == ("int4_asym", group, 1.0)
    sizes = [paths[(kind, p)].with_suffix(".bin").stat().st_size for p in EXPORTS[kind]]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    if kind == "llama":
        assert records[(kind, "int8-dynamic")]["settings"]["mode"] == "int8_asym"
        assert records[(kind, "fp16")]["settings"]["weights"] == "fp16"


def test_export_artifact_verifies_and_sizes_only_the_ir(lm_exports):
    models, paths, records = lm_exports
    for key in FULL_EXPORTS:
        record, path = records[key], paths[key]
        assert record["status"] == "ok", record.get("error")
        assert record["input_names"] == ["input_ids", "attention_mask", "position_ids", "beam_idx"]
        assert record["runtime_settings"]["INFERENCE_PRECISION_HINT"] == "f32"
        ir_bytes = path.stat().st_size + path.with_suffix(".bin").stat().st_size
        assert record["size_bytes"] == ir_bytes   # the bundle's tokenizer is not counted
        assert (path.parent / "tokenizer.json").is_file()
        assert not (path.parent / "openvino_tokenizer.xml").exists()
    assert records[("llama", "fp32")]["parity"]["token_agreement"] == 1.0


def test_optimum_intel_loads_the_export_folder(lm_exports):
    """The folder is optimum-intel's layout: OVModelForCausalLM generates the same tokens."""
    import torch
    from optimum.intel import OVModelForCausalLM

    models, paths, _ = lm_exports
    from edgekd.benchmarks.runtime_openvino import settings

    path = paths[("llama", "fp32")]
    generator = ov_generator(path, "fp32")
    ours = generate(generator, models["llama"])
    model = OVModelForCausalLM.from_pretrained(path.parent, ov_config=settings("fp32", 1))
    for ids, tokens in zip(prompts(models["llama"]), ours):
        ids = torch.from_numpy(ids)[None]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        np.testing.assert_array_equal(out[0, ids.shape[1]:].numpy(), tokens)


def test_generator_runs_without_torch(lm_exports, tmp_path):
    """The adapter and runtimes.py copied alone (as onto a device), torch made unimportable."""
    models, paths, _ = lm_exports
    expected, reference = torch_tokens(models["gpt2"])
    rows = greedy_without_torch(paths[("gpt2", "fp32")], prompts(models["gpt2"]), NEW_TOKENS,
                                tmp_path, precision="fp32")
    np.testing.assert_array_equal(np.array(rows), expected)


def test_generator_refuses_an_ir_without_kv_cache(tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    from edgekd.benchmarks import runtimes
    from edgekd.benchmarks.runtime_openvino import Generator, settings

    ids = ops.parameter([1, -1], np.int64, name="input_ids")
    ov.save_model(ov.Model([ops.convert(ids, "f32")], [ids]), str(tmp_path / "m.xml"))
    with pytest.raises(runtimes.ArtifactError, match="KV cache"):
        Generator(str(tmp_path / "m.xml"), settings("fp32", 1))


def test_int4_group_size_divides_every_width():
    from edgekd.exporters.openvino import int4_group_size

    assert int4_group_size([4096, 11008]) == 128
    assert int4_group_size([576, 1536]) == 64      # SmolLM2-135M
    assert int4_group_size([32, 64]) == 32
    assert int4_group_size([24, 48]) == -1          # 8 would be the largest: per-channel instead


def test_the_int4_group_size_is_a_setting(lm_exports, tmp_path):
    from edgekd.errors import EdgekdError
    from edgekd.exporters import completed_export, openvino
    from edgekd.tasks import causal_lm

    models, paths, records = lm_exports
    assert records[("llama", "int4")]["settings"]["group_size"] == 32        # default: 128 -> 32
    assert records[("gpt2", "int4")]["settings"]["group_size"] == 16         # asked for
    assert records[("gpt2", "int4")]["settings"]["requested_group_size"] == 16
    # a finished export is reused only for the options it was made with
    out = paths[("llama", "int4")].parent
    assert completed_export(out, models["llama"], "openvino", "int4", CONTEXT) is not None
    assert completed_export(out, models["llama"], "openvino", "int4", CONTEXT,
                            {"int4_group_size": 16}) is None
    with pytest.raises(EdgekdError, match="int4_group_size 128 does not divide the weight widths"):
        openvino.export(models["llama"], tmp_path, "int4", seq_len=CONTEXT, calibration=None,
                        task=causal_lm, options={"int4_group_size": 128})
    assert list(tmp_path.iterdir()) == []                   # refused before converting


def weight_types(path: Path):
    """Counter of the element types of an IR's constants (weights, zero points, scales)."""
    from collections import Counter

    import openvino as ov

    model = ov.Core().read_model(str(path))
    return Counter(op.get_element_type().get_type_name() for op in model.get_ops()
                   if op.get_type_name() == "Constant")


def test_int4_ratio_and_data_aware_compression(lm_exports, tmp_path):
    """export.int4_ratio keeps part of the weights in int8, export.int4_data_aware runs AWQ and
    scale estimation on training chunks; both are recorded, and the artifact generates."""
    import random

    from transformers import AutoTokenizer

    from edgekd.distillation.lm_eval import calibration_ids
    from edgekd.errors import EdgekdError
    from edgekd.exporters import check_supported, openvino
    from edgekd.tasks import causal_lm

    models, paths, _ = lm_exports
    rng = random.Random(3)
    texts = [" ".join(sentence(rng) for _ in range(6)) for _ in range(20)]
    ids = calibration_ids(AutoTokenizer.from_pretrained(models["llama"]), texts, 16, 8)
    assert ids.shape == (8, 16)
    record = openvino.export(models["llama"], tmp_path, "int4", seq_len=CONTEXT,
                             calibration={"input_ids": ids}, task=causal_lm,
                             options={"int4_ratio": 0.5, "int4_data_aware": True})
    settings = record["settings"]
    assert settings["ratio"] == 0.5 and settings["group_size"] == 32
    assert settings["data_aware"] == {"awq": True, "scale_estimation": True, "calibration_chunks": 8,
                                      "sensitivity": "hessian_input_activation"}
    mixed, full = weight_types(tmp_path / record["artifact"]), weight_types(paths[("llama", "int4")])
    assert 0 < mixed["u4"] < full["u4"] and mixed["u8"] > full["u8"]
    assert generate(ov_generator(tmp_path / record["artifact"], "int4"), models["llama"]).shape == (3, NEW_TOKENS)
    with pytest.raises(EdgekdError, match="int4 data-aware needs calibration examples"):
        check_supported("openvino", "int4", task=causal_lm, options={"int4_data_aware": True})
    with pytest.raises(EdgekdError, match="onnx int4 does not take export.int4_ratio"):
        check_supported("onnx", "int4", task=causal_lm, options={"int4_ratio": 0.5})


def test_check_supported_refuses_precisions_without_an_lm_export():
    from edgekd.errors import EdgekdError
    from edgekd.exporters import check_supported
    from edgekd.tasks import causal_lm

    for precision in ("bf16", "int8-static"):
        with pytest.raises(EdgekdError, match="causal-lm"):
            check_supported("openvino", precision, task=causal_lm)
    assert check_supported("openvino", "int4", task=causal_lm).FORMAT == "openvino"


def test_openvino_genai_generates_the_same_tokens_and_times_them(lm_exports):
    from edgekd.exporters.openvino_genai_check import genai_perf

    models, paths, _ = lm_exports
    path = paths[("llama", "fp32")]
    ids = prompts(models["llama"])[1]
    expected = generate(ov_generator(path, "fp32"), models["llama"])[1]
    result = genai_perf(path.parent, ids, NEW_TOKENS, threads=1, runs=1)
    np.testing.assert_array_equal(result["tokens"], expected)
    assert result["ttft_ms"] > 0 and result["tpot_ms"] > 0
    assert result["runtime_settings"]["KV_CACHE_PRECISION"] == "f32"
    text = genai_perf(path.parent, "the cat sat on", 4, threads=1, runs=1)
    assert text["ttft_ms"] > 0
    assert sorted(p.name for p in path.parent.glob("openvino_*.xml")) == ["openvino_model.xml"]


def test_genai_and_edgekd_timed_side_by_side_generate_the_same_tokens(lm_exports):
    from edgekd.exporters.openvino_genai_check import side_by_side

    models, paths, _ = lm_exports
    path = paths[("llama", "fp32")]
    ids = prompts(models["llama"])[1]
    both = side_by_side(path.parent, ids, NEW_TOKENS, threads=1, runs=2)
    np.testing.assert_array_equal(both["genai"]["tokens"], both["edgekd"]["tokens"])
    np.testing.assert_array_equal(both["edgekd"]["tokens"],
                                  generate(ov_generator(path, "fp32"), models["llama"])[1])
    for name in ("genai", "edgekd"):
        assert both[name]["ttft_ms"] > 0 and both[name]["tpot_ms"] > 0
