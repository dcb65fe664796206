"""The generate scenario: the greedy loop, prompts cut from saved texts, TTFT / TPOT records,
repeats pooled, and the runner measuring a real tiny causal LM (PyTorch) as a device would."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekd.benchmarks import generation, runtimes
from edgekd.benchmarks.bench import add_repeat, bench_artifact, entry_file_name
from edgekd.errors import EdgekdError
from tiny_lm import save_tiny_lm


class CountingGenerator:
    """A numpy language model whose next token is (last token + 1) mod V: greedy output is
    known in advance, and it counts its calls and can refuse long contexts."""

    runtime, version, errors, vocab_size = "numpy", "1", (ValueError,), 50

    def __init__(self, max_context=None, fail_on=None):
        self.max_context, self.fail_on, self.calls, self._last = max_context, fail_on, [], None

    def reset(self):
        self._last = None

    def _logits(self, token):
        row = np.zeros(self.vocab_size, np.float32)
        row[(token + 1) % self.vocab_size] = 1.0
        return row

    def prefill(self, ids):
        self.calls.append(("prefill", len(ids)))
        self._last = int(ids[-1])
        return np.stack([self._logits(int(t)) for t in ids])

    def decode(self, token):
        self.calls.append(("decode", token))
        if token == self.fail_on:
            raise ValueError("kernel exploded\nat line 2")
        return self._logits(token)


def test_greedy_prefills_once_then_decodes_the_argmax():
    gen = CountingGenerator()
    out = runtimes.greedy(gen, np.array([3, 4, 5]), 4)
    assert list(out.tokens) == [6, 7, 8, 9]
    assert gen.calls == [("prefill", 3), ("decode", 6), ("decode", 7), ("decode", 8)]
    assert out.ttft_ms >= 0 and len(out.step_ms) == 3


def test_greedy_refuses_a_prompt_longer_than_the_context_and_names_runtime_errors():
    with pytest.raises(runtimes.ArtifactError, match="does not fit the artifact's context of 10"):
        runtimes.greedy(CountingGenerator(max_context=10), np.arange(8), 4)
    with pytest.raises(runtimes.ArtifactError, match="numpy failed generating: kernel exploded$"):
        runtimes.greedy(CountingGenerator(fail_on=13), np.array([11]), 4)   # 12, then 13 raises
    with pytest.raises(runtimes.ArtifactError, match="empty prompt"):
        runtimes.greedy(CountingGenerator(), np.array([], np.int64), 4)


def test_greedy_rows_strip_left_padding_and_sequence_logits_cover_every_position():
    ids = np.array([[0, 0, 7, 8], [1, 2, 3, 4]])
    mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    gen = CountingGenerator()
    tokens = runtimes.greedy_rows(gen, {"input_ids": ids, "attention_mask": mask}, 3)
    assert tokens.tolist() == [[9, 10, 11], [5, 6, 7]]
    assert gen.calls[0] == ("prefill", 2)                       # the padding never reached it
    logits = runtimes.sequence_logits(CountingGenerator(), np.array([1, 2, 3]))
    assert logits.shape == (3, 50) and list(logits.argmax(-1)) == [2, 3, 4]


def test_prompts_are_cut_from_texts_long_enough(tmp_path):
    path = tmp_path / "inputs.npz"
    ids = np.arange(30).reshape(3, 10)
    mask = np.ones_like(ids)
    mask[0, :6] = 0                                             # row 0 has 4 real tokens
    np.savez(path, input_ids=ids, attention_mask=mask)
    prompts = generation.load_prompts(str(path), [3, 8])
    assert [list(p) for p in prompts[3]] == [[6, 7, 8], [10, 11, 12], [20, 21, 22]]
    assert len(prompts[8]) == 2
    with pytest.raises(ValueError, match="no saved prompt has 11 tokens .the longest has 10"):
        generation.load_prompts(str(path), [11])
    assert generation.parse_lengths("256, 64,64") == [64, 256]
    for bad in ("", "a,4", "0"):
        with pytest.raises(ValueError):
            generation.parse_lengths(bad)


def test_measure_records_ttft_and_tpot_per_length_and_repeats_pool():
    prompts = {4: [np.arange(4)], 9: [np.arange(9), np.arange(1, 10)]}
    record = generation.measure(CountingGenerator(), prompts, new_tokens=5, warmup=1,
                                min_generations=3, min_time_s=0)
    assert record["prompt_lengths"] == [4, 9] and record["new_tokens"] == 5
    for item in record["prompts"]:
        assert item["generations"] == 3
        assert len(item["ttft_samples_ms"]) == 3 and len(item["tpot_samples_ms"]) == 3 * 4
        assert item["decode_tokens_per_s"] > 0 and item["prefill_tokens_per_s"] > 0
    both = generation.pooled([record, record])
    assert [p["generations"] for p in both["prompts"]] == [6, 6]
    assert both["prompts"][1]["tpot_ms"]["n"] == 24
    with pytest.raises(runtimes.ArtifactError, match="context"):
        generation.measure(CountingGenerator(max_context=12), prompts, new_tokens=5, warmup=0,
                           min_generations=1, min_time_s=0)


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = save_tiny_lm(tmp_path_factory.mktemp("lm") / "student", layers=2)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 200, size=(3, 40))
    mask = np.ones_like(ids)
    mask[0, :10] = 0
    np.savez(folder / "inputs.npz", input_ids=ids, attention_mask=mask)
    return folder


def test_runner_generate_scenario_on_a_real_tiny_lm(lm_folder):
    argv = [sys.executable, "-m", "edgekd.benchmarks.runner", "--model", str(lm_folder),
            "--inputs", str(lm_folder / "inputs.npz"), "--scenario", "generate",
            "--prompt-lengths", "8,30", "--new-tokens", "6", "--min-iterations", "2",
            "--min-time", "0", "--energy", "estimate"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["scenario"] == "generate" and result["seq_len"] == 30
    lengths = [p["prompt_len"] for p in result["generation"]["prompts"]]
    assert lengths == [8, 30]
    assert len(result["samples_ms"]) == 2 * 2 * 5                 # 2 lengths x 2 gens x 5 steps
    assert result["latency_ms"]["n"] == 20 and result["energy_detail"]["per"].startswith("generated token")
    # a prompt length no saved text reaches: one line, exit 2
    proc = subprocess.run(argv[:10] + ["64"] + argv[11:], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("runner: ") and "64 tokens" in proc.stderr


def test_ab_gates_an_lm_at_the_prompt_lengths_it_is_given(lm_folder, tmp_path, capsys):
    from edgekd.cli import main

    verdicts = tmp_path / "verdicts.json"
    code = main(["ab", str(lm_folder), str(lm_folder), "--pairs", "2", "--warmup", "1",
                 "--min-iterations", "1", "--min-time", "0", "--prompt-lengths", "8,30",
                 "--new-tokens", "4", "--max-slowdown", "1000%", "--json", str(verdicts)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(verdicts.read_text())
    assert [e["measure"] for e in doc["entries"]] == ["TPOT", "TTFT @8", "TTFT @30"]
    assert all(e["n_repeats"] == [2, 2] for e in doc["entries"])


def test_bench_measures_an_lm_generating_and_names_its_file(lm_folder):
    entry = bench_artifact(lm_folder, "local", threads=1, batch_size=1, seq_len=None, warmup=1,
                           min_iterations=1, min_time_s=0, energy="none", repeats=2,
                           generate={"prompt_lengths": [8, 30], "new_tokens": 4})
    assert entry["scenario"] == "generate" and len(entry["repeats"]) == 2
    assert [p["generations"] for p in entry["generation"]["prompts"]] == [2, 2]
    assert entry["latency_ms"]["n"] == 2 * 2 * 3
    assert entry_file_name(entry) == "student-pytorch-fp32-t1-p8_30-n4.json"
    again = add_repeat(dict(entry), entry["repeats"][0], entry)
    assert len(again["repeats"]) == 3 and again["generation"]["prompts"][0]["generations"] == 3
    with pytest.raises(EdgekdError, match="batch size 1"):
        bench_artifact(lm_folder, "local", threads=1, batch_size=2, seq_len=None, warmup=1,
                       min_iterations=1, min_time_s=0, energy="none")
