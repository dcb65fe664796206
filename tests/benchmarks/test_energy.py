"""Energy meters on generated sysfs folders, a real user command, and the CPU-time estimate."""

from __future__ import annotations

import os
import sys
import time

import pytest

from edgekd.benchmarks import energy, memory, stats


def put(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def powercap(root, packages):
    """A generated /sys/class/powercap: packages as {N: (energy_uj, max_range_uj)}, plus a
    sub-zone (intel-rapl:0:0, the cores) that must not be counted twice."""
    for n, (value, span) in packages.items():
        put(root / f"intel-rapl:{n}" / "energy_uj", value)
        put(root / f"intel-rapl:{n}" / "max_energy_range_uj", span)
    put(root / "intel-rapl:0:0" / "energy_uj", 123)
    put(root / "intel-rapl:0:0" / "max_energy_range_uj", 1000)


def test_rapl_sums_packages_and_handles_wrap_around(tmp_path):
    span = 262_143_328_850
    powercap(tmp_path, {0: (span - 2_000_000, span), 1: (5_000_000, span)})
    meter = energy.open_meter("rapl", rapl={"root": str(tmp_path)})
    assert meter.method == "rapl" and len(meter.dirs) == 2
    meter.start()
    put(tmp_path / "intel-rapl:0" / "energy_uj", 1_000_000)   # wrapped: 2 J to the top + 1 J
    put(tmp_path / "intel-rapl:1" / "energy_uj", 9_500_000)   # 4.5 J
    assert meter.stop() == pytest.approx(7.5)


def test_rapl_without_domains_is_unavailable_and_auto_falls_back(tmp_path):
    with pytest.raises(energy.MeterUnavailable, match="no RAPL"):
        energy.open_meter("rapl", rapl={"root": str(tmp_path)})
    meter = energy.open_meter("auto", rapl={"root": str(tmp_path)}, hwmon={"root": str(tmp_path)})
    assert meter.method.startswith("estimate:")  # never presented as a measurement


def test_hwmon_integrates_power_and_prefers_the_board_input_rail(tmp_path):
    put(tmp_path / "hwmon0" / "power1_input", 4_000_000)  # 4 W in microwatts
    meter = energy.HwmonMeter(root=str(tmp_path))
    assert meter.read_w() == pytest.approx(4.0)
    t0 = time.monotonic()
    meter.start()
    time.sleep(0.3)
    joules = meter.stop()
    assert joules == pytest.approx(4.0 * (time.monotonic() - t0), rel=0.1)
    jetson = tmp_path / "jetson"
    for ch, label, mv, ma in ((1, "VDD_IN", 5000, 1000), (2, "VDD_CPU_GPU_CV", 5000, 400)):
        put(jetson / "hwmon1" / f"in{ch}_label", label)
        put(jetson / "hwmon1" / f"in{ch}_input", mv)
        put(jetson / "hwmon1" / f"curr{ch}_input", ma)
    assert energy.HwmonMeter(root=str(jetson)).read_w() == pytest.approx(5.0)  # VDD_IN alone


def test_command_meter_reads_watts_and_joule_counters(tmp_path):
    watts = energy.open_meter("command", command=f"{sys.executable} -c \"print('2.5 W')\"")
    assert watts.method == "command" and not watts.is_counter
    assert watts.idle_power_w(0.3) == pytest.approx(2.5)
    counter_file = tmp_path / "joules"
    counter_file.write_text("100.0 J")
    joules = energy.CommandMeter(command=f"cat {counter_file}")
    assert joules.is_counter
    joules.start()
    counter_file.write_text("112.5 J")
    assert joules.stop() == pytest.approx(12.5)
    with pytest.raises(energy.MeterUnavailable, match="needs a command"):
        energy.open_meter("command")


def test_estimate_is_cpu_time_times_the_power_figure():
    default = energy.open_meter("estimate")
    assert default.method == f"estimate:cpu-time x {energy.DEFAULT_WATTS_PER_CORE:g} W/core (default)"
    meter = energy.open_meter("estimate", watts_per_core=2.0)
    assert meter.method.endswith("2 W/core (profile)") and meter.idle_power_w(1.0) == 0.0
    meter.start()
    c0 = sum(os.times()[:2])
    end = time.process_time() + 0.2
    while time.process_time() < end:  # burn 0.2 s of CPU
        pass
    joules = meter.stop()
    assert joules == pytest.approx(2.0 * (sum(os.times()[:2]) - c0), abs=0.05) and joules > 0.3


def test_estimate_resolves_windows_shorter_than_a_clock_tick():
    # A millisecond-long measured window is common (a tiny model, --min-time 0); the estimate
    # must not read 0 J or one 10 ms clock tick there.
    meter = energy.open_meter("estimate", watts_per_core=1.0)
    readings = []
    for _ in range(5):
        meter.start()
        end = time.process_time() + 0.002
        while time.process_time() < end:  # burn 2 ms of CPU
            pass
        readings.append(meter.stop())
    assert all(0.0015 <= j < 0.05 for j in readings), readings


def test_rss_sampler_sees_a_window_allocation():
    sampler = memory.RssSampler(interval_s=0.005).start()
    sampler.begin_window()
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    time.sleep(0.05)
    peak = sampler.end_window()
    del block
    sampler.stop()
    assert peak - memory._rss_reader()() > 40 * 2**20 or peak > 64 * 2**20
    assert memory.max_rss_bytes() >= peak * 0.9


def test_summary_statistics():
    out = stats.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert out == {"p50": 3.0, "p90": 4.6, "p95": pytest.approx(4.8), "p99": pytest.approx(4.96),
                   "mean": 3.0, "std": pytest.approx(1.5811, abs=1e-4), "min": 1.0, "max": 5.0, "n": 5}
    assert stats.coefficient_of_variation([10, 10, 10]) == 0.0
    assert stats.throughput_per_s(100, 4, 2.0) == 200.0
    with pytest.raises(ValueError):
        stats.summarize([])
