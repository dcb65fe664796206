"""Does the latency gate hold on this machine? (`make gate-calibration`; a study, not a test)

Real runs only, nothing doctored: two small BERT-style classifiers are exported to ONNX here,
the baseline and a candidate whose feed-forward layers are wider so that it does ~10% more
arithmetic (its measured slowdown is printed). Every measurement is a fresh runner process
through edgekd's own harness (`edgekd.benchmarks.bench`), exactly as `edgekd bench` and
`edgekd ab` run them.

- compare, null: the baseline benched twice in separate sessions (K repeats each), then
  `compare_reports` at --max-slowdown: any REGRESSED is a false alarm.
- compare, hit: the baseline benched, then the candidate benched (separately): REGRESSED is a hit.
- ab, null / hit: `edgekd ab`'s paired measurement (A B, B A, ...) of baseline vs itself, and of
  baseline vs candidate.
Trials of the four kinds are interleaved in time so that the machine's drift falls on all alike.

    python scripts/calibrate_gate.py [--trials 20] [--repeats 5] [--pairs 5] [--min-time 0.3]

Goals (issue 11): 0 / 20 false alarms and >= 19 / 20 hits for both gates. At the defaults it
takes about 11-14 minutes on 2 cores; `--trials 5` gives a rough table in a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN, LAYERS, HEADS, SEQ_LEN, VOCAB = 256, 4, 4, 128, 1000
# per layer and token: 4h^2 + 2hi + 2sh MACs -> +13.5% arithmetic. Fixed costs (embeddings,
# softmax, the call itself) do not grow with it: measured, this comes out near +10% (1200, i.e.
# +10.6% arithmetic, measured only +8 to +9%).
FFN_BASE, FFN_WIDE = 1024, 1248


def work_ratio() -> float:
    """Arithmetic of the candidate over the baseline (multiply-adds per token per layer)."""
    def macs(ffn: int) -> int:
        return 4 * HIDDEN ** 2 + 2 * HIDDEN * ffn + 2 * SEQ_LEN * HIDDEN
    return macs(FFN_WIDE) / macs(FFN_BASE)


def export_model(folder: Path, ffn: int, seed: int = 0) -> Path:
    """A random-init BERT classifier exported to ONNX with inputs.npz beside it (token ids drawn
    at random: the timing of a dense model does not depend on which tokens it reads)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=HEADS, intermediate_size=ffn,
                        max_position_embeddings=SEQ_LEN, num_labels=5, return_dict=False)
    model = BertForSequenceClassification(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (16, SEQ_LEN)).astype(np.int64)
    arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = list(arrays)
    sample = tuple(torch.from_numpy(arrays[n][:1]) for n in names)
    torch.onnx.export(model, sample, str(folder / "model.onnx"), input_names=names,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
    np.savez(folder / "inputs.npz", labels=np.zeros(len(ids), np.int64), **arrays)
    return folder / "model.onnx"


def bench_session(artifact: Path, repeats: int, min_time: float) -> list[dict]:
    """One `edgekd bench` session of one artifact: K fresh-process repeats."""
    from edgekd.benchmarks.bench import measure_round_robin, prepare

    m = prepare(artifact, "local", threads=1, batch_size=1, seq_len=None, warmup=5,
                min_iterations=20, min_time_s=min_time, energy="none")
    return measure_round_robin([m], repeats)


def compare_trial(base: Path, cand: Path, args) -> tuple[bool, float]:
    """Two separate bench sessions and the compare verdict: (regressed, estimated ratio)."""
    from edgekd.report.compare import compare_reports

    baseline = bench_session(base, args.repeats, args.min_time)
    candidate = bench_session(cand, args.repeats, args.min_time)
    row = compare_reports(baseline, candidate, "p50", args.max_slowdown)["rows"][0]
    return row["verdict"] == "REGRESSED", row["ratio"]


def ab_trial(base: Path, cand: Path, args) -> tuple[bool, float]:
    """One paired A/B session and its verdict: (regressed, estimated ratio)."""
    from edgekd.benchmarks.bench import prepare
    from edgekd.report.ab import ab_result, measure_pairs

    sides = [prepare(p, "local", threads=1, batch_size=1, seq_len=None, warmup=5,
                     min_iterations=20, min_time_s=args.min_time, energy="none")
             for p in (base, cand)]
    pairs, entries = measure_pairs(*sides, args.pairs)
    row = ab_result(pairs, entries, "p50", args.max_slowdown, 0.05)["rows"][0]
    return row["verdict"] == "REGRESSED", row["ratio"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="trials of each kind (default 20)")
    p.add_argument("--repeats", type=int, default=5,
                   help="K per side for compare (default 5, the CI setting of docs/regression-gate.md)")
    p.add_argument("--pairs", type=int, default=5, help="pairs for ab (default 5)")
    p.add_argument("--min-time", type=float, default=0.3, help="measured seconds per process")
    p.add_argument("--max-slowdown", type=float, default=0.05)
    p.add_argument("--out", default="runs/gate-calibration.json")
    args = p.parse_args(argv)
    kinds = {"compare null": (compare_trial, False), "compare hit": (compare_trial, True),
             "ab null": (ab_trial, False), "ab hit": (ab_trial, True)}
    outcomes: dict[str, list] = {k: [] for k in kinds}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgekd-calibration-") as tmp:
        print("exporting the baseline and the ~10%-more-work candidate ...", file=sys.stderr)
        base = export_model(Path(tmp) / "base", FFN_BASE)
        cand = export_model(Path(tmp) / "cand", FFN_WIDE)
        for artifact in (base, cand):   # untimed: the first process after an export pays disk and cache
            bench_session(artifact, 1, args.min_time)
        start = time.monotonic()
        for trial in range(args.trials):
            for kind, (run, slower) in kinds.items():
                flagged, ratio = run(base, cand if slower else base, args)
                outcomes[kind].append({"regressed": flagged, "ratio": ratio})
                print(f"  trial {trial + 1:2d} {kind:<13} ratio {ratio:.3f} "
                      f"{'REGRESSED' if flagged else 'ok'}  ({time.monotonic() - start:.0f} s)",
                      file=sys.stderr)
    minutes = (time.monotonic() - start) / 60
    print(f"\nGate calibration: {args.trials} trials each, --max-slowdown "
          f"{100 * args.max_slowdown:g}%, compare K={args.repeats} repeats per side, "
          f"ab {args.pairs} pairs, {args.min_time:g} s per process; candidate does "
          f"{100 * (work_ratio() - 1):.1f}% more arithmetic; {minutes:.1f} min.\n")
    print("| gate | same artifact: false alarms | ~10% more work: hits | median ratio (null) "
          "| median ratio (hit) | goal |")
    print("|---|---|---|---|---|---|")
    doc = {"settings": vars(args), "work_ratio": work_ratio(), "minutes": minutes, "gates": {}}
    for gate in ("compare", "ab"):
        null, hit = outcomes[f"{gate} null"], outcomes[f"{gate} hit"]
        fa, hits = sum(o["regressed"] for o in null), sum(o["regressed"] for o in hit)
        med_null = float(np.median([o["ratio"] for o in null]))
        med_hit = float(np.median([o["ratio"] for o in hit]))
        goal = fa == 0 and hits >= round(0.95 * len(hit))
        print(f"| {gate} | {fa} / {len(null)} | {hits} / {len(hit)} | {med_null:.3f} | "
              f"{med_hit:.3f} | {'met' if goal else 'NOT met'} (0 false alarms, >= 95% hits) |")
        doc["gates"][gate] = {"false_alarms": fa, "hits": hits, "trials": len(null),
                              "median_ratio_null": med_null, "median_ratio_hit": med_hit,
                              "null": null, "hit": hit}
    from edgekd.files import write_json_atomic

    write_json_atomic(args.out, doc)
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
