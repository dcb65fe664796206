"""Sequence-level knowledge distillation (Kim & Rush 2016, "Sequence-Level Knowledge
Distillation", sec. 3.2): the student also trains on the teacher's own greedy output (beam size
1). For each prompt (the start of a training-text chunk) the teacher's continuation is decoded
once and saved as jsonl; its "text" field (prompt + continuation) joins the training text, so
the token-level KD cache (`lm_cache.build_topk_cache`) holds the teacher's top-k on it as well.

Keyed, like the top-k cache, by a fingerprint of the teacher folder, the prompts' texts and the
settings: a change recomputes, an unchanged rerun never runs the teacher, an interrupted one
resumes after its last whole line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from edgekd.distillation.lm_cache import _atomic_write, cache_fingerprint, load_teacher

SEQUENCE_FORMAT = 2   # in the sequence-KD fingerprint: 1 decoded the continuation on its own


def corpus_prompts(tokenizer, texts: list[str], prompt_tokens: int) -> list[tuple[int, list[int]]]:
    """(text index, prompt token ids) for each text: its first `prompt_tokens` tokens, or the
    first half of a shorter text, so every prompt leaves something of the text to continue."""
    prompts = []
    for i, ids in enumerate(tokenizer(list(texts))["input_ids"]):
        if len(ids) >= 2:
            prompts.append((i, ids[:min(prompt_tokens, len(ids) // 2)]))
    return prompts


def greedy_continuations(model, prompts: list[list[int]], max_new_tokens: int,
                         pad_token_id: int) -> list[list[int]]:
    """The teacher's greedy (beam 1) continuation token ids of each prompt, batched with left
    padding (a decoder-only model must see its prompt end where generation starts)."""
    device = next(model.parameters()).device
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for j, prompt in enumerate(prompts):
        ids[j, longest - len(prompt):], mask[j, longest - len(prompt):] = torch.tensor(prompt), 1
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_token_id)
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    continuations = []
    for row in out[:, longest:].cpu().tolist():   # cut at the first end token (padding follows)
        ends = [i for i, token in enumerate(row) if token in stops]
        continuations.append(row[:ends[0]] if ends else row)
    return continuations


def split_decoded(tokenizer, prompt: list[int], continuation: list[int]) -> tuple[str, str]:
    """(prompt text, continuation text) of one generated sequence, joined exactly by `+` into
    the decoded whole. Decoding the continuation alone would lose a SentencePiece word's leading
    space and break a character whose bytes straddle the boundary, so the whole is decoded and
    cut after the longest prefix it shares with the prompt decoded alone."""
    text = tokenizer.decode(list(prompt) + list(continuation), skip_special_tokens=True)
    alone = tokenizer.decode(list(prompt), skip_special_tokens=True)
    cut = len(os.path.commonprefix([alone, text]))
    return text[:cut], text[cut:]


def _complete_lines(path: Path) -> int:
    """How many whole jsonl lines `path` holds; a partial last line (a crash mid-write) is cut."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return data[:keep].count(b"\n")


def build_sequence_kd(teacher_dir: Path, texts: list[str], out_file: Path, *,
                      prompt_tokens: int = 32, max_new_tokens: int = 64, batch_size: int = 8,
                      device: str | None = None) -> Path:
    """Write `out_file` (jsonl): for each corpus text with 2+ tokens, {"text_index", "prompt",
    "continuation", "text" = prompt + continuation}, the continuation being the teacher's greedy
    output (Kim & Rush 2016, sequence-level KD). A sidecar `<out_file>.meta.json` holds the
    fingerprint; an unchanged rerun returns at once, an interrupted one resumes after the last
    whole line, a changed teacher/texts/settings starts over."""
    out_file, settings = Path(out_file), {"prompt_tokens": prompt_tokens, "max_new_tokens": max_new_tokens}
    key = cache_fingerprint(teacher_dir, texts, kind="sequence", format=SEQUENCE_FORMAT, **settings)
    meta_file = out_file.with_name(out_file.name + ".meta.json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if meta.get("fingerprint") == key and meta.get("complete"):
        return out_file
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if meta.get("fingerprint") != key:
        out_file.unlink(missing_ok=True)
        _atomic_write(meta_file, lambda tmp: Path(tmp).write_text(json.dumps({"fingerprint": key})))
    done = _complete_lines(out_file)
    model, tokenizer = load_teacher(teacher_dir, device)
    pad_id = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    prompts = corpus_prompts(tokenizer, texts, prompt_tokens)
    with open(out_file, "a", encoding="utf-8") as out:
        for start in range(done, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            continuations = greedy_continuations(model, [p for _, p in batch], max_new_tokens, pad_id)
            for (text_index, prompt), continuation in zip(batch, continuations):
                prompt_text, new_text = split_decoded(tokenizer, prompt, continuation)
                out.write(json.dumps({"text_index": text_index, "prompt": prompt_text,
                                      "continuation": new_text, "text": prompt_text + new_text},
                                     ensure_ascii=False) + "\n")
            out.flush()                          # a whole batch is on disk before the next starts
    final = {"fingerprint": key, "complete": True, "sequences": len(prompts), **settings}
    _atomic_write(meta_file, lambda tmp: Path(tmp).write_text(json.dumps(final, indent=1) + "\n"))
    return out_file


def read_sequence_kd(path: Path) -> list[str]:
    """The training texts (prompt + teacher continuation) of a `build_sequence_kd` file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def prompt_chunks(chunks: list[str], used: int, count: int) -> list[str]:
    """`count` chunks to take prompts from: those after the first `used` (the training chunks)
    first, so the teacher writes about text the student has not seen, then the training ones."""
    order = chunks[used:] + chunks[:used]
    return order[:count]


def sequence_kd_texts(teacher_dir: Path, chunks: list[str], used: int, cfg, out_file: Path,
                      log=print) -> tuple[list[str], dict]:
    """(training texts, record for metrics.json) of sequence-level KD for the recipe's
    `distill.sequence_kd` (`cfg`: prompts, prompt_tokens, new_tokens): the teacher's greedy
    continuations of prompts cut from `prompt_chunks(chunks, used, cfg.prompts)`, cached in
    `out_file` (see `build_sequence_kd`)."""
    import time

    started = time.perf_counter()
    sources = prompt_chunks(chunks, used, cfg.prompts)
    build_sequence_kd(teacher_dir, sources, out_file, prompt_tokens=cfg.prompt_tokens,
                      max_new_tokens=cfg.new_tokens)
    texts = [t for t in read_sequence_kd(out_file) if t.strip()]
    seconds = time.perf_counter() - started
    log(f"sequence-level KD: {len(texts)} teacher continuations of {cfg.prompt_tokens}-token "
        f"prompts (up to {cfg.new_tokens} new tokens) in {seconds:.0f}s")
    return texts, {"prompts": cfg.prompts, "prompt_tokens": cfg.prompt_tokens,
                   "new_tokens": cfg.new_tokens, "texts": len(texts), "time_s": round(seconds, 1)}
