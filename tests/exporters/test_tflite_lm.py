"""TFLite causal-LM export with a KV cache: real litert-torch conversions of a tiny Llama (GQA,
tied embeddings) and a tiny GPT-2, run by the real interpreter through
`runtime_tflite.Generator`, compared with the PyTorch reference (`runtime_pytorch.Generator`)
through the same greedy loop.

Each Llama precision is converted once for the module (about 30 s each on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgekdError

pytest.importorskip("litert_torch", reason="litert-torch is not installed (edgekd[tflite])")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (edgekd[tflite])")

from edgekd.benchmarks import runtime_pytorch, runtimes  # noqa: E402
from edgekd.exporters import tflite_lm  # noqa: E402
from edgekd.tasks import causal_lm  # noqa: E402
from tiny_lm import greedy_without_torch, save_tiny_lm  # noqa: E402

CONTEXT = 64
NEW_TOKENS = 16
# 3 prompt lengths: inside the 32-token prefill, just over it (the 64 one), and the longest
# that still leaves room for NEW_TOKENS in the context.
PROMPT_LENGTHS = (3, 33, CONTEXT - NEW_TOKENS)


def redraw_weights(folder: Path, std: float = 0.25, seed: int = 0) -> Path:
    """Redraw the matrices of the tiny LM with a larger std: at the default 0.02 a random model
    greedily repeats one token forever, which would make token parity trivial; at 0.25 each
    continuation has many distinct tokens, so a wrong cache or position shows up."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, std)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    """A tiny Llama (4 layers, hidden 32, 4 query / 2 KV heads, tied embeddings)."""
    return redraw_weights(save_tiny_lm(tmp_path_factory.mktemp("lm") / "llama"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory, lm_dir):
    """`exports[precision]` -> (model.tflite path, export fields), each converted once."""
    root = tmp_path_factory.mktemp("tflite-lm")

    class Exports(dict):
        def __missing__(self, precision):
            started = time.perf_counter()
            info = tflite_lm.export(lm_dir, root / precision, precision, seq_len=CONTEXT,
                                    task=causal_lm)
            path = root / precision / info["artifact"]
            print(f"\ntflite causal LM {precision}: export {time.perf_counter() - started:.1f} s, "
                  f"{path.stat().st_size / 1e6:.2f} MB")
            self[precision] = (path, info)
            return self[precision]

    return Exports()


def prompts(vocab: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, vocab, size=n) for n in PROMPT_LENGTHS]


def greedy_tokens(generator, rows: list[np.ndarray]) -> np.ndarray:
    return np.stack([runtimes.greedy(generator, ids, NEW_TOKENS).tokens for ids in rows])


@pytest.fixture(scope="module")
def reference(lm_dir) -> tuple:
    """PyTorch's greedy tokens and prefill logits of every prompt (runtime_pytorch.Generator)."""
    generator = runtime_pytorch.Generator(str(lm_dir), runtime_pytorch.settings("fp32", 1))
    rows = prompts(generator.vocab_size)
    return rows, greedy_tokens(generator, rows), [generator.prefill(ids) for ids in rows]


def open_generator(path: Path):
    generator, _ = runtimes.open_generator(str(path), precision="fp32", threads=1)
    return generator


def test_prefill_lengths_stop_at_the_context():
    assert tflite_lm.prefill_lengths(64) == [32, 64]
    assert tflite_lm.prefill_lengths(320) == [32, 64, 128, 256, 320]


def test_settings_say_how_the_cache_was_made(exports):
    _, info = exports["fp32"]
    assert info["artifact"] == "model.tflite" and info["batch_size"] == 1
    assert info["input_names"] == ["input_ids", "attention_mask"]
    settings = info["settings"]
    assert settings["context"] == CONTEXT and settings["prefill_lengths"] == [32, CONTEXT]
    assert "kv_cache" in settings and settings["quantization"] == "none"
    assert exports["int8-dynamic"][1]["settings"]["quantization"] == "dynamic_int8"
    assert exports["int4"][1]["settings"]["group_size"] == tflite_lm.INT4_GROUP_SIZE


def test_generator_reads_the_context_and_vocabulary_from_the_file(exports, lm_dir):
    from transformers import AutoConfig

    generator = open_generator(exports["fp32"][0])
    assert generator.max_context == CONTEXT
    assert generator.vocab_size == AutoConfig.from_pretrained(lm_dir).vocab_size
    assert generator.runtime == "ai_edge_litert"


def test_fp32_greedy_tokens_equal_pytorch(exports, reference):
    rows, expected, _ = reference
    assert len({int(t) for t in expected.ravel()}) > NEW_TOKENS  # parity is not trivial
    got = greedy_tokens(open_generator(exports["fp32"][0]), rows)
    assert got.shape == expected.shape
    agreement = causal_lm.token_match_rate(expected, got)
    print(f"\nfp32 greedy agreement with PyTorch: {agreement:.1%} of {expected.size} tokens")
    assert agreement >= 0.99
    np.testing.assert_array_equal(got, expected)


def test_fp32_prefill_gives_every_positions_logits(exports, reference):
    rows, _, expected_logits = reference
    generator = open_generator(exports["fp32"][0])
    for ids, expected in zip(rows, expected_logits):
        logits = generator.prefill(ids)
        assert logits.shape == expected.shape and logits.dtype == np.float32
        np.testing.assert_array_equal(logits.argmax(-1), expected.argmax(-1))


def test_without_prefill_logits_the_last_prompt_token_is_decoded(exports, reference):
    """The path for a file whose prefill returns no logits (exported without
    output_logits_on_prefill), taken here on the fp32 file by telling the generator to ignore
    its prefill logits: prefill gives the last position's [1, V], and greedy is unchanged."""
    rows, expected, expected_logits = reference
    generator = open_generator(exports["fp32"][0])
    generator._prefill_logits = False
    for ids, logits in zip(rows, expected_logits):
        last = generator.prefill(ids)
        assert last.shape == (1, generator.vocab_size)
        assert last.argmax() == logits[-1].argmax()
    np.testing.assert_array_equal(greedy_tokens(generator, rows), expected)


def test_generation_restarts_cleanly_after_another_sequence(exports, reference):
    """prefill resets the cache: a long sequence left in it must not change the next one."""
    rows, expected, _ = reference
    generator = open_generator(exports["fp32"][0])
    runtimes.greedy(generator, rows[2], NEW_TOKENS)
    np.testing.assert_array_equal(runtimes.greedy(generator, rows[0], NEW_TOKENS).tokens,
                                  expected[0])


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic", "int4"])
def test_compressed_weights_generate_valid_ids(exports, reference, precision):
    rows, expected, _ = reference
    path = exports[precision][0]
    assert path.stat().st_size < exports["fp32"][0].stat().st_size
    generator = open_generator(path)
    got = greedy_tokens(generator, rows)
    assert got.shape == (len(rows), NEW_TOKENS) and got.dtype == np.int64
    assert ((got >= 0) & (got < generator.vocab_size)).all()
    print(f"\n{precision} greedy agreement with PyTorch: "
          f"{causal_lm.token_match_rate(expected, got):.1%}")


def test_a_prompt_longer_than_the_context_is_refused(exports):
    generator = open_generator(exports["fp32"][0])
    ids = np.arange(1, CONTEXT - 4)
    with pytest.raises(runtimes.ArtifactError, match=f"context of {CONTEXT} tokens"):
        runtimes.greedy(generator, ids, NEW_TOKENS)
    with pytest.raises(runtimes.ArtifactError, match=f"KV cache of {CONTEXT} tokens"):
        generator.prefill(np.arange(1, CONTEXT + 8))


def test_generator_runs_without_torch(exports, reference, tmp_path):
    """As on a device: the two adapter files copied alone, torch made unimportable."""
    rows, expected, _ = reference
    got = greedy_without_torch(exports["fp32"][0], [rows[1]], NEW_TOKENS, tmp_path, threads=1)
    assert got[0] == expected[1].tolist()


def test_a_file_without_a_kv_cache_is_not_a_generator(tflite_dir):
    with pytest.raises(runtimes.ArtifactError, match="not a causal LM with a KV cache"):
        open_generator(tflite_dir / "model.tflite")


def redrawn_lm(folder: Path, kind: str) -> Path:
    """A 2-layer tiny LM with redrawn weights: `llama` (tied head), `llama-untied` (its own
    lm_head), or `gpt2` (biases and LayerNorms redrawn too, so they are not all 0 / 1)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = redraw_weights(save_tiny_lm(folder, kind=kind.split("-")[0], layers=2))
    hf = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(1)
    if kind == "llama-untied":
        hf.config.tie_word_embeddings = False
        untied = type(hf)(hf.config)
        untied.load_state_dict(hf.state_dict())
        with torch.no_grad():
            untied.lm_head.weight.normal_(0.0, 0.25)
        untied.save_pretrained(folder)
    elif kind == "gpt2":
        with torch.no_grad():
            for parameter in hf.parameters():
                if parameter.dim() == 1:
                    parameter.add_(torch.randn_like(parameter) * 0.1)
        hf.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["llama", "llama-untied", "gpt2"])
def test_rebuilt_model_computes_what_the_hugging_face_model_does(tmp_path, kind):
    """The generative API model built from the HF config, with the HF weights, gives the HF
    logits (in PyTorch, before any conversion): tied or separate head, Llama or GPT-2."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = redrawn_lm(tmp_path / kind, kind)
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    config = tflite_lm.model_config(AutoConfig.from_pretrained(folder), CONTEXT)
    assert config.lm_head_share_weight_with_embedding is (kind != "llama-untied")
    api = tflite_lm.generative_api()
    model = tflite_lm._build_model(api, folder, config, CONTEXT)
    cache = api.converter.kv_utils.KVCache.from_model_config(CONTEXT, config)
    ids = torch.arange(1, 21).reshape(1, -1)
    with torch.no_grad():
        expected = hf(ids).logits
        got = model(ids.int(), torch.arange(20, dtype=torch.int), cache)["logits"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_gpt2_fp32_greedy_tokens_equal_pytorch(tmp_path):
    folder = redrawn_lm(tmp_path / "gpt2", "gpt2")
    info = tflite_lm.export(folder, tmp_path / "out", "fp32", seq_len=CONTEXT, task=causal_lm)
    reference = runtime_pytorch.Generator(str(folder), runtime_pytorch.settings("fp32", 1))
    rows = prompts(reference.vocab_size, seed=1)
    expected = greedy_tokens(reference, rows)
    got = greedy_tokens(open_generator(tmp_path / "out" / info["artifact"]), rows)
    assert causal_lm.token_match_rate(expected, got) >= 0.99
    np.testing.assert_array_equal(got, expected)


def test_the_tensorflow_alias_is_gone_after_import():
    tflite_lm.generative_api()
    assert "tensorflow" not in sys.modules


def test_only_llama_and_gpt2_models_are_converted():
    from transformers import GPT2Config, LlamaConfig, MistralConfig

    with pytest.raises(EdgekdError, match="supports llama, gpt2 models .* not 'mistral'"):
        tflite_lm.model_config(MistralConfig(), CONTEXT)
    with pytest.raises(EdgekdError, match="activation_function=relu"):
        tflite_lm.model_config(GPT2Config(activation_function="relu"), CONTEXT)
    with pytest.raises(EdgekdError, match="exceeds the model's max_position_embeddings"):
        tflite_lm.model_config(LlamaConfig(max_position_embeddings=32), CONTEXT)
    with pytest.raises(EdgekdError, match="rope_scaling"):
        tflite_lm.model_config(LlamaConfig(rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                         "low_freq_factor": 1.0,
                                                         "high_freq_factor": 4.0,
                                                         "original_max_position_embeddings": 8192}),
                               CONTEXT)


def test_unsupported_lm_precisions_are_refused_up_front():
    from edgekd.exporters import check_supported

    with pytest.raises(EdgekdError, match="cannot export a causal-lm model int8-static"):
        check_supported("tflite", "int8-static", calibration={"x": 1}, task=causal_lm)


def test_int4_needs_whole_blocks():
    from transformers import LlamaConfig

    config = tflite_lm.model_config(LlamaConfig(hidden_size=48, intermediate_size=100,
                                                num_attention_heads=4), CONTEXT)
    with pytest.raises(EdgekdError,
                       match="hidden_size=48, intermediate_size=100, .* not a multiple of 32"):
        tflite_lm._check_int4_blocks(config)
    ok = tflite_lm.model_config(LlamaConfig(hidden_size=256, intermediate_size=512,
                                            num_attention_heads=4), CONTEXT)
    tflite_lm._check_int4_blocks(ok, 128)
    with pytest.raises(EdgekdError, match="blocks of 128: hidden_size=96"):
        tflite_lm._check_int4_blocks(tflite_lm.model_config(
            LlamaConfig(hidden_size=96, intermediate_size=256, num_attention_heads=4), CONTEXT), 128)


def test_int4_block_sizes_are_those_litert_has_recipes_for(lm_dir, tmp_path):
    with pytest.raises(EdgekdError, match="blocks of 32 or 128 weights .*not 64"):
        tflite_lm.export(lm_dir, tmp_path, "int4", seq_len=CONTEXT, task=causal_lm, group_size=64)
    assert tflite_lm.INT4_RECIPES[tflite_lm.INT4_GROUP_SIZE] == tflite_lm.RECIPES["int4"]


def test_export_artifact_verifies_the_causal_lm(tmp_path, lm_dir):
    """The whole export path (refusals, export, verification by generating, export.json)."""
    from edgekd.exporters import export_artifact

    record = export_artifact(lm_dir, "tflite", "fp32", tmp_path / "student-tflite-fp32",
                             role="student", seq_len=CONTEXT, eval_inputs=None, task=causal_lm)
    assert record["status"] == "ok", record.get("error")
    assert record["parity"]["token_agreement"] >= 0.99
