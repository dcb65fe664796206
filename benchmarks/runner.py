"""The on-device benchmark runner: load one artifact, run real inputs, print one JSON document.

Runs where the model runs, with only numpy and the one runtime the artifact needs (it never
imports torch unless the artifact is a PyTorch model folder). It is copied alone with its
siblings (`runtimes.py` and the `runtime_<format>.py` adapters, `contracts.py`, `stats.py`,
`memory.py`, `energy.py`) into a temp folder, so it imports them as plain modules when edgekd
is not installed. The adapter and its settings are the ones verification used on the host.

    python runner.py --model model.onnx --inputs inputs.npz --precision fp32 --threads 1 \
        --batch-size 1 --seq-len 128 --warmup 10 --min-iterations 50 --min-time 5 --energy auto

A causal LM is measured with `--scenario generate --prompt-lengths 64,256 --new-tokens 32`
(greedy generation, batch 1; see generation.py): then warm-up and min-iterations count whole
generations per prompt length, and latency_ms is the time per output token (TPOT).

Exit codes: 0 ok; 2 bad input (artifact, inputs, arguments); 3 the runtime is not installed.
Stdout carries the JSON document only: anything a runtime prints is redirected to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
import traceback

import numpy as np

try:  # inside the edgekd package
    from . import contracts, energy, generation, memory, runtimes, stats
except ImportError:  # copied alone onto a device: siblings are plain modules
    import contracts
    import energy
    import generation
    import memory
    import runtimes
    import stats


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help=".onnx, .xml (OpenVINO IR), .tflite or HF folder")
    p.add_argument("--inputs", required=True, help="inputs.npz of tokenized examples")
    p.add_argument("--precision", default="fp32",
                   help="the artifact's precision: chooses the runtime settings (e.g. OpenVINO's "
                        "inference precision), exactly as verification did")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=None, help="default: the inputs' length")
    p.add_argument("--warmup", type=int, default=10, help="warm-up calls (at least)")
    p.add_argument("--warmup-time", type=float, default=0.0, help="warm-up seconds (at least)")
    p.add_argument("--min-iterations", type=int, default=50)
    p.add_argument("--min-time", type=float, default=5.0, help="measured seconds (at least)")
    p.add_argument("--max-iterations", type=int, default=1_000_000)
    p.add_argument("--scenario", default="call", choices=("call", "generate"),
                   help="call: one forward pass per sample; generate: greedy generation (LMs)")
    p.add_argument("--prompt-lengths", default="64,256",
                   help="generate: prompt lengths in tokens, comma-separated")
    p.add_argument("--new-tokens", type=int, default=32, help="generate: new tokens per prompt")
    p.add_argument("--energy", default="auto", help="auto, none, " + ", ".join(energy.METERS))
    p.add_argument("--idle-time", type=float, default=1.0, help="seconds of idle power measured")
    p.add_argument("--power-profile", default=None,
                   help='JSON: {"watts_per_core": 2.5, "energy_command": "..."}')
    args = p.parse_args(argv)
    if args.threads < 1 or args.batch_size < 1 or args.min_iterations < 1 or args.warmup < 0:
        p.error("threads, batch-size, min-iterations must be >= 1 and warmup >= 0")
    if args.scenario == "generate":
        if args.batch_size != 1:
            p.error("the generate scenario runs batch 1")
        if args.new_tokens < 2:
            p.error("--new-tokens must be >= 2")
        try:
            args.prompt_lengths = generation.parse_lengths(args.prompt_lengths)
        except ValueError as exc:
            p.error(str(exc))
    return args


CANONICAL = runtimes.TOKEN_INPUTS


def match_inputs(model_names: list[str], saved: list[str]) -> dict[str, str]:
    """Which saved array feeds each model input: same name, else a saved name inside the model's
    (converters rename: 'serving_default_input_ids:0'), else position in the canonical order
    (TFLite from litert-torch names them 'args_0', 'args_1', ...)."""
    out = {}
    for pos, name in enumerate(model_names):
        hits = [k for k in sorted(saved, key=len, reverse=True) if k == name or k in name]
        if hits:
            out[name] = hits[0]
        elif pos < len(CANONICAL):
            out[name] = CANONICAL[pos]
        else:
            raise ValueError(f"cannot tell which saved array feeds model input '{name}'")
    return out


def load_batches(path: str, batch_size: int, seq_len: int | None, model_names: list[str]):
    """Rows i*b..i*b+b of the saved examples (cycling), cut or zero-padded to `seq_len`,
    keyed by the model's input names. Returns (batches, seq_len).

    Every batch is built before timing starts, so the measured work is only the runtime call.
    """
    with np.load(path) as data:
        arrays = {k: np.asarray(data[k]) for k in data.files if k != "labels"}
    if "input_ids" not in arrays or arrays["input_ids"].ndim != 2 or len(arrays["input_ids"]) == 0:
        raise ValueError(f"{path}: needs a non-empty 2-D 'input_ids' array")
    n, saved_len = arrays["input_ids"].shape
    seq_len = seq_len or saved_len
    # BERT-style models take token types; all zeros is what a tokenizer gives for one segment.
    arrays.setdefault("token_type_ids", np.zeros((n, saved_len), dtype=np.int64))
    mapping = match_inputs(model_names, list(arrays))
    if seq_len <= saved_len:
        arrays = {k: v[:, :seq_len] for k, v in arrays.items()}
    else:
        arrays = {k: np.pad(v, ((0, 0), (0, seq_len - saved_len))) for k, v in arrays.items()}
    batches = []
    for i in range(n):  # at most n distinct starting rows cover every example at any batch size
        rows = np.arange(i * batch_size, (i + 1) * batch_size) % n
        batches.append({name: arrays[key][rows] for name, key in mapping.items()})
        if (i + 1) * batch_size % n == 0:
            break
    return batches, seq_len


def cpu_info() -> dict:
    """CPU model, logical cores and feature flags (from /proc/cpuinfo where it exists)."""
    model, flags, names = platform.processor() or platform.machine(), [], {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip().lower(), value.strip()
                if key in ("model name", "hardware", "model") and value:
                    names.setdefault(key, value)
                elif key in ("flags", "features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    # x86 has "model name" (and "model", a bare number); Arm boards "Hardware" or "Model".
    for key in ("model name", "hardware", "model"):
        if key in names and (key != "model" or not names[key].isdigit()):
            model = names[key]
            break
    return {"model": model, "cores": os.cpu_count(), "flags": flags, "machine": platform.machine()}


# CPU features that decide which kernels int8 / fp16 / bf16 models get (x86 and Arm names);
# benchmarks/environment.py reports the same subset for the host.
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
                     "neon", "asimd", "asimddp", "fphp", "asimdhp", "sve", "i8mm", "bf16")
# Thread settings the runtimes read: they change the numbers.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OV_CPU_THREADS_NUM")


def memory_total_mb() -> float | None:
    """Physical memory of this machine in MB (POSIX sysconf; None where it is not available)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 1)
    except (AttributeError, ValueError, OSError):
        return None


def environment(runtime: str, runtime_version: str) -> dict:
    """The machine that ran the artifact, described by itself (not by the host that asked):
    CPU model, the flags that pick kernels, cores, memory, OS, Python and the runtime versions.
    `edgekd compare` refuses to compare numbers whose environments differ."""
    cpu = cpu_info()
    flags = set(cpu["flags"])
    return {
        "cpu": {"model": cpu["model"], "cores_logical": cpu["cores"], "machine": cpu["machine"],
                "flags": [f for f in INTERESTING_FLAGS if f in flags]},
        "memory_total_mb": memory_total_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "runtimes": {runtime: runtime_version, "numpy": np.__version__},
        "threads_env": {name: os.environ[name] for name in THREAD_VARS if name in os.environ},
    }


def timed_loop(run, feeds, min_calls: int, min_s: float, max_calls: int, start: int = 0) -> list[float]:
    """Call `run` on the feeds in turn until both `min_calls` and `min_s` are reached; returns
    one monotonic-clock duration in ms per call (each call timed alone)."""
    clock, samples, k = time.perf_counter_ns, [], start
    t_end = time.monotonic() + min_s
    while len(samples) < max_calls and (len(samples) < min_calls or time.monotonic() < t_end):
        feed = feeds[k % len(feeds)]
        t0 = clock()
        run(feed)
        samples.append((clock() - t0) / 1e6)
        k += 1
    return samples


def open_meter(args: argparse.Namespace):
    """The energy meter the arguments ask for (None for `none`)."""
    profile = json.loads(args.power_profile) if args.power_profile else {}
    return energy.open_meter(args.energy, watts_per_core=profile.get("watts_per_core"),
                             command=profile.get("energy_command"))


def energy_record(meter, joules, idle_w: float, window_s: float, units: int, per: str):
    """(energy per unit in J, detail) of one measured window, idle power subtracted."""
    if not meter:
        return None, None
    net = max(joules - idle_w * window_s, 0.0)
    return net / units, {"window_j": joules, "idle_w": idle_w, "net_j": net, "window_s": window_s,
                         "calls": units, "per": per}


def machine_fields(runtime: str, version: str) -> dict:
    """The fields every runner result has that describe the machine that ran it."""
    return {"cpu": cpu_info(), "host": socket.gethostname(), "python": platform.python_version(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "environment": environment(runtime, version)}


def benchmark_generation(args: argparse.Namespace) -> dict:
    """The generate scenario: load the artifact's Generator, warm up, generate from real prompts
    at each length; latency_ms / samples_ms are the time per output token (TPOT) pooled over
    the lengths, `generation` holds TTFT and TPOT per length."""
    sampler = memory.RssSampler().start()
    meter = open_meter(args)
    t0 = time.perf_counter_ns()
    # only the last prompt position's logits: what an application generating text computes
    generator, settings = runtimes.open_generator(args.model, precision=args.precision,
                                                  threads=args.threads, last_logits_only=True)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    try:
        prompts = generation.load_prompts(args.inputs, args.prompt_lengths)
    except ValueError as exc:
        raise runtimes.ArtifactError(str(exc)) from None
    idle_w = meter.idle_power_w(args.idle_time) if meter else 0.0
    sampler.begin_window()
    if meter:
        meter.start()
    t0 = time.monotonic()
    record = generation.measure(generator, prompts, new_tokens=args.new_tokens,
                                warmup=max(1, min(args.warmup, 3)),
                                min_generations=args.min_iterations, min_time_s=args.min_time,
                                max_generations=args.max_iterations)
    window_s = time.monotonic() - t0
    joules = meter.stop() if meter else None
    window_peak = sampler.end_window()
    sampler.stop()
    tpot = [x for item in record["prompts"] for x in item["tpot_samples_ms"]]
    tokens = sum(item["generations"] * args.new_tokens for item in record["prompts"])
    # The window includes the warm-up generations: energy is per generated token of them all.
    warm_tokens = record["warmup_generations"] * len(record["prompts"]) * args.new_tokens
    energy_j, energy_detail = energy_record(meter, joules, idle_w, window_s, tokens + warm_tokens,
                                            "generated token (prefill included)")
    return contracts.RunnerResult(**{
        "format": runtimes.format_of(args.model), "runtime": generator.runtime,
        "runtime_version": str(generator.version), "runtime_settings": settings,
        "threads": args.threads, "batch_size": 1, "seq_len": max(args.prompt_lengths),
        "size_bytes": artifact_size(args.model), "load_time_ms": load_ms,
        "first_inference_ms": record["first_ttft_ms"],
        "warmup": {"iterations": record["warmup_generations"], "min_iterations": args.warmup,
                   "min_time_s": 0.0, "time_s": None, "per": "generation per prompt length"},
        "measure": {"min_iterations": args.min_iterations, "min_time_s": args.min_time,
                    "time_s": window_s, "per": "generation per prompt length"},
        "latency_ms": stats.summarize(tpot), "samples_ms": tpot,
        "throughput_per_s": 1000.0 / float(np.median(tpot)),      # decode tokens/s
        "peak_memory_mb": max(sampler.peak_bytes, memory.max_rss_bytes()) / 2**20,
        "peak_memory_window_mb": window_peak / 2**20,
        "energy_j": energy_j, "energy_method": meter.method if meter else "none",
        "energy_detail": energy_detail, "scenario": "generate", "generation": record,
        **machine_fields(generator.runtime, str(generator.version)),
    }).to_dict()


def benchmark(args: argparse.Namespace) -> dict:
    """Load, warm up, measure; the runner result as a dict."""
    if args.scenario == "generate":
        return benchmark_generation(args)
    sampler = memory.RssSampler().start()
    meter = open_meter(args)

    t0 = time.perf_counter_ns()
    backend, settings = runtimes.open_adapter(args.model, precision=args.precision,
                                              threads=args.threads)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    if backend.fixed_batch and args.batch_size != backend.fixed_batch:
        raise runtimes.ArtifactError(
            f"the artifact was exported for batch {backend.fixed_batch} (static shapes) and "
            f"cannot run batch {args.batch_size}: benchmark it at batch size {backend.fixed_batch}")
    batches, seq_len = load_batches(args.inputs, args.batch_size, args.seq_len, list(backend.inputs))
    feeds = [backend.prepare(b) for b in batches]

    t0 = time.perf_counter_ns()
    backend(feeds[0])
    first_ms = (time.perf_counter_ns() - t0) / 1e6

    t0 = time.monotonic()
    warm = timed_loop(backend, feeds, args.warmup, args.warmup_time, args.max_iterations, start=1)
    warm_s = time.monotonic() - t0

    idle_w = meter.idle_power_w(args.idle_time) if meter else 0.0
    sampler.begin_window()
    if meter:
        meter.start()
    t0 = time.monotonic()
    samples = timed_loop(backend, feeds, args.min_iterations, args.min_time, args.max_iterations,
                         start=1 + len(warm))
    window_s = time.monotonic() - t0
    joules = meter.stop() if meter else None
    window_peak = sampler.end_window()
    sampler.stop()

    energy_j, energy_detail = energy_record(meter, joules, idle_w, window_s, len(samples),
                                            "inference call (one batch)")
    return contracts.RunnerResult(**{
        "format": runtimes.format_of(args.model),
        "runtime": backend.runtime,
        "runtime_version": str(backend.version),
        "runtime_settings": settings,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "seq_len": seq_len,
        "size_bytes": artifact_size(args.model),
        "load_time_ms": load_ms,
        "first_inference_ms": first_ms,
        "warmup": {"iterations": len(warm), "min_iterations": args.warmup,
                   "min_time_s": args.warmup_time, "time_s": warm_s},
        "measure": {"min_iterations": args.min_iterations, "min_time_s": args.min_time,
                    "time_s": window_s},
        "latency_ms": stats.summarize(samples),
        "samples_ms": samples,
        "throughput_per_s": stats.throughput_per_s(len(samples), args.batch_size, window_s),
        "peak_memory_mb": max(sampler.peak_bytes, memory.max_rss_bytes()) / 2**20,
        "peak_memory_window_mb": window_peak / 2**20,
        "energy_j": energy_j,
        "energy_method": meter.method if meter else "none",
        "energy_detail": energy_detail,
        **machine_fields(backend.runtime, str(backend.version)),
    }).to_dict()


def artifact_size(path: str) -> int:
    """Bytes on disk: the file plus its weight siblings (model.bin, model.onnx_data), or a folder."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    stem = os.path.splitext(path)[0]
    extra = [stem + ".bin"] if path.endswith(".xml") else [path + "_data", path + ".data"]
    return os.path.getsize(path) + sum(os.path.getsize(p) for p in extra if os.path.isfile(p))


def unexpected_error_line(exc: BaseException) -> str:
    """One line for an exception no adapter anticipated: its type, first message line and the
    innermost frame that raised it (a bug report from a board must say where, not only what)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or isinstance(exc, (ValueError, OSError)):  # those say what was wrong with the input
        return f"{type(exc).__name__}: {first}"
    last = frames[-1]
    where = f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"
    return f"{type(exc).__name__}: {first} (at {where})"


def main(argv=None) -> int:
    args = parse_args(argv)
    # Keep stdout for the JSON alone: runtimes and their native code may print to fd 1.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for path, what in ((args.model, "artifact"), (args.inputs, "inputs file")):
        if not os.path.exists(path):
            print(f"runner: {what} not found: {path}", file=sys.stderr)
            return 2
    try:
        result = benchmark(args)
    except runtimes.RuntimeMissing as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 3
    except energy.MeterUnavailable as exc:
        print(f"runner: energy meter '{args.energy}': {exc}", file=sys.stderr)
        return 2
    except runtimes.ArtifactError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the device boundary: the host shows this line, not a traceback
        print(f"runner: {unexpected_error_line(exc)}", file=sys.stderr)
        return 2
    json.dump(result, json_out)
    json_out.write("\n")
    json_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
