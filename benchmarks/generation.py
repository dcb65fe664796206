"""The runner's `generate` scenario: greedy generation from real prompts, timed token by token.

Standalone (stdlib + numpy + one runtime): copied next to the on-device runner. For each prompt
length L (e.g. 64 and 256 tokens), prompts are the first L real tokens of the saved held-out
texts that have at least L; each generation prefills the prompt and decodes exactly `new_tokens`
tokens greedily (min = max: an end token does not stop it), through the runtime's Generator
(`runtimes.greedy`, the same loop verification used).

- TTFT (time to first token): the prefill call plus the argmax of its last logits.
- TPOT (time per output token): each later decode call plus its argmax.
- prefill tokens/s = L / TTFT p50; decode tokens/s = 1 / TPOT p50 (the medians: one slow
  generation does not make the rates disagree with the latency columns).
Warm-up generations run first at every length and are not counted.
"""

from __future__ import annotations

import time

import numpy as np

try:
    from . import runtimes, stats
except ImportError:  # copied alone onto a device
    import runtimes
    import stats


def parse_lengths(text: str) -> list[int]:
    """'64,256' -> [64, 256] (sorted, unique, each >= 1); ValueError on anything else."""
    try:
        lengths = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"prompt lengths must be integers separated by commas, got '{text}'") from None
    if not lengths or lengths[0] < 1:
        raise ValueError(f"prompt lengths must be >= 1, got '{text}'")
    return lengths


def load_prompts(path: str, lengths: list[int]) -> dict[int, list[np.ndarray]]:
    """For each length L, the first L real tokens of every saved row that has at least L
    (the rows of `input_ids`, padding removed by `attention_mask`)."""
    with np.load(path) as data:
        if "input_ids" not in data.files:
            raise ValueError(f"{path}: needs an 'input_ids' array")
        inputs = {k: np.asarray(data[k]) for k in data.files if k in ("input_ids", "attention_mask")}
    rows = runtimes.prompt_rows(inputs)
    longest = max((len(r) for r in rows), default=0)
    out = {}
    for length in lengths:
        prompts = [r[:length] for r in rows if len(r) >= length]
        if not prompts:
            raise ValueError(f"{path}: no saved prompt has {length} tokens (the longest has "
                             f"{longest}); ask for shorter --prompt-lengths")
        out[length] = prompts
    return out


def measure(generator, prompts: dict[int, list[np.ndarray]], *, new_tokens: int, warmup: int,
            min_generations: int, min_time_s: float, max_generations: int = 1000) -> dict:
    """Warm up, then generate from the prompts of each length in turn until both
    `min_generations` and `min_time_s` (per length) are reached. Returns the `generation`
    record: per prompt length the TTFT and TPOT samples and summaries, and the token rates."""
    if new_tokens < 2:
        raise ValueError("new tokens must be >= 2 (one prefill token and at least one decode step)")
    for length, rows in prompts.items():
        runtimes.check_context(generator, length, new_tokens)
    per_length, first_ttft = [], None
    for length, rows in prompts.items():
        for k in range(warmup):
            result = runtimes.greedy(generator, rows[k % len(rows)], new_tokens)
            first_ttft = result.ttft_ms if first_ttft is None else first_ttft
        ttft, tpot, k = [], [], 0
        t_end = time.monotonic() + min_time_s
        while k < max_generations and (k < min_generations or time.monotonic() < t_end):
            result = runtimes.greedy(generator, rows[k % len(rows)], new_tokens)
            ttft.append(result.ttft_ms)
            tpot += result.step_ms
            k += 1
        per_length.append(length_record(length, ttft, tpot, k))
    return {"prompt_lengths": sorted(prompts), "new_tokens": new_tokens, "greedy": True,
            "warmup_generations": warmup,
            "first_ttft_ms": first_ttft, "prompts": per_length}


def length_record(length: int, ttft: list, tpot: list, generations: int) -> dict:
    """One prompt length's numbers from its TTFT (one per generation) and TPOT samples."""
    ttft_summary, tpot_summary = stats.summarize(ttft), stats.summarize(tpot)
    return {"prompt_len": length, "generations": generations,
            "ttft_ms": ttft_summary, "ttft_samples_ms": ttft,
            "tpot_ms": tpot_summary, "tpot_samples_ms": tpot,
            "prefill_tokens_per_s": 1000.0 * length / ttft_summary["p50"],
            "decode_tokens_per_s": 1000.0 / tpot_summary["p50"]}


def pooled(records: list[dict]) -> dict:
    """One `generation` record from several repeats (fresh processes) of the same measurement:
    per prompt length the samples pooled and the summaries and rates recomputed."""
    first = records[0]
    by_length: dict[int, dict] = {}
    for record in records:
        for item in record["prompts"]:
            slot = by_length.setdefault(item["prompt_len"], {"ttft": [], "tpot": [], "k": 0})
            slot["ttft"] += item["ttft_samples_ms"]
            slot["tpot"] += item["tpot_samples_ms"]
            slot["k"] += item["generations"]
    return {**{k: v for k, v in first.items() if k != "prompts"},
            "prompts": [length_record(length, s["ttft"], s["tpot"], s["k"])
                        for length, s in sorted(by_length.items())]}
