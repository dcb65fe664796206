"""Energy meters: joules used by the measured window, minus idle, per inference.

Standalone (stdlib + numpy-free): copied next to the on-device runner. Every meter has the same
surface -- `available()`, `idle_power_w(seconds)`, `start()`, `stop() -> joules` and a `method`
string -- and is chosen by name or, with `auto`, the first one that works here:

  rapl      Linux powercap energy counters of all CPU packages (wrap-around handled)
  nvml      the NVIDIA GPU total-energy counter (pynvml, imported only then)
  hwmon     power sensors in /sys/class/hwmon, e.g. a Jetson's INA3221 (sampled, integrated)
  command   a user command printing watts ("3.2 W", or a bare number) or a joule counter ("J")
  estimate  process CPU time x a per-core power figure -- an estimate, never a measurement

Idle power is measured just before the window and subtracted, so the result is the work's
own energy. `estimate` counts only this process's CPU time, which is already net of idle.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import threading
import time

# Estimate default: 5 W per busy core. Laptop/desktop x86 cores draw ~3-10 W at load,
# server cores ~2-4 W, Cortex-A76-class boards ~1-2 W; a target profile should set its own
# figure (`power: {watts_per_core: ...}`), and the method string says which was used.
DEFAULT_WATTS_PER_CORE = 5.0
AUTO_ORDER = ("rapl", "nvml", "hwmon", "command", "estimate")


class MeterUnavailable(RuntimeError):
    """The named meter cannot work on this machine (no sensor, no permission, no command)."""


class _Polled:
    """Background polling: `poll()` every `interval_s` between `start()` and `stop()`."""

    interval_s = 0.05

    def _start_polling(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run_poll, name="energy-meter", daemon=True)
        self._thread.start()

    def _run_poll(self) -> None:
        while not self._halt.wait(self.interval_s):
            self.poll()

    def _stop_polling(self) -> None:
        self._halt.set()
        self._thread.join(timeout=5.0)
        self.poll()

    def poll(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class CounterMeter(_Polled):
    """A meter over cumulative energy counters in microjoules, each with its own wrap range."""

    method = "counter"
    interval_s = 1.0  # well under the fastest wrap (~60 s for a 2^32 uJ counter at 70 W)

    def counters(self) -> list[tuple[int, int]]:
        """Current (value_uj, max_range_uj) of every counter."""
        raise NotImplementedError

    def poll(self) -> None:
        for i, (value, span) in enumerate(self.counters()):
            last = self._last[i]
            # A smaller value means the counter wrapped at its range (once, given the poll rate).
            self._total_uj += value - last if value >= last else value + span - last
            self._last[i] = value

    def start(self) -> None:
        self._last = [v for v, _ in self.counters()]
        self._total_uj = 0
        self._start_polling()

    def stop(self) -> float:
        self._stop_polling()
        return self._total_uj / 1e6

    def idle_power_w(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        t0 = time.monotonic()
        self.start()
        time.sleep(seconds)
        joules = self.stop()
        return joules / (time.monotonic() - t0)


class RaplMeter(CounterMeter):
    """Linux powercap RAPL: the package domains (`intel-rapl:N`, also used on AMD), summed."""

    method = "rapl"

    def __init__(self, root: str = "/sys/class/powercap", **_):
        self.dirs = sorted(d for d in glob.glob(os.path.join(root, "*"))
                           if re.fullmatch(r"intel-rapl:\d+", os.path.basename(d)))
        if not self.dirs:
            raise MeterUnavailable(f"no RAPL package domains under {root}")
        try:
            self.counters()
        except OSError as exc:
            raise MeterUnavailable(f"RAPL counters not readable ({exc.strerror}; run as root?)")

    def counters(self) -> list[tuple[int, int]]:
        out = []
        for d in self.dirs:
            with open(os.path.join(d, "energy_uj")) as f:
                value = int(f.read())
            with open(os.path.join(d, "max_energy_range_uj")) as f:
                span = int(f.read())
            out.append((value, span))
        return out


class NvmlMeter(CounterMeter):
    """NVIDIA GPUs' total-energy counters (millijoules since driver load), summed."""

    method = "nvml"

    def __init__(self, **_):
        try:
            import pynvml
        except ImportError:
            raise MeterUnavailable("pynvml is not installed (pip install nvidia-ml-py)") from None
        try:
            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                             for i in range(pynvml.nvmlDeviceGetCount())]
            self.counters()
        except Exception as exc:  # NVMLError: no driver, no GPU, counter unsupported
            raise MeterUnavailable(f"NVML energy counter unavailable: {exc}") from None
        if not self._handles:
            raise MeterUnavailable("NVML found no GPU")

    def counters(self) -> list[tuple[int, int]]:
        # mJ -> uJ; a 64-bit counter that does not wrap in practice.
        return [(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) * 1000, 2**64)
                for h in self._handles]


class PowerMeter(_Polled):
    """A meter over instantaneous power readings (watts), sampled and integrated (trapezoids)."""

    method = "power"
    interval_s = 0.05

    def read_w(self) -> float:
        raise NotImplementedError

    def poll(self) -> None:
        now, watts = time.monotonic(), self.read_w()
        self._joules += (now - self._t) * (watts + self._w) / 2
        self._t, self._w = now, watts

    def start(self) -> None:
        self._t, self._w, self._joules = time.monotonic(), self.read_w(), 0.0
        self._t0 = self._t
        self._start_polling()

    def stop(self) -> float:
        self._stop_polling()
        return self._joules

    def idle_power_w(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        self.start()
        time.sleep(seconds)
        joules = self.stop()
        # Divide by the span actually integrated: a slow sensor read is not idle time.
        return joules / max(self._t - self._t0, 1e-9)


class HwmonMeter(PowerMeter):
    """hwmon power sensors: `power*_input` (uW), or INA3221 rails as `in*_input` (mV) x
    `curr*_input` (mA). A rail labelled VDD_IN (a Jetson's board input) is used alone, since
    it already contains the other rails."""

    method = "hwmon"

    def __init__(self, root: str = "/sys/class/hwmon", **_):
        self.power_files: list[str] = []
        self.rails: list[tuple[str, str]] = []
        for d in sorted(glob.glob(os.path.join(root, "hwmon*"))):
            self.power_files += sorted(glob.glob(os.path.join(d, "power*_input")))
            for volt in sorted(glob.glob(os.path.join(d, "in*_input"))):
                channel = re.search(r"in(\d+)_input$", volt).group(1)
                curr = os.path.join(d, f"curr{channel}_input")
                if os.path.exists(curr):
                    label = _read_text(os.path.join(d, f"in{channel}_label")) or ""
                    if "VDD_IN" in label.upper():
                        self.rails = [(volt, curr)]
                        break
                    self.rails.append((volt, curr))
        if not self.power_files and not self.rails:
            raise MeterUnavailable(f"no hwmon power sensors under {root}")
        try:
            self.read_w()
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"hwmon power sensors not readable: {exc}") from None

    def read_w(self) -> float:
        if self.power_files:
            return sum(int(_read_text(p)) for p in self.power_files) / 1e6
        return sum(int(_read_text(v)) * int(_read_text(c)) for v, c in self.rails) / 1e6


class CommandMeter(PowerMeter):
    """A user command (an external USB meter's CLI) printing watts, or a joule counter when
    the number is followed by `J`. Run without a shell; its first number is used."""

    method = "command"
    interval_s = 0.2

    def __init__(self, command: str | None = None, **_):
        if not command:
            raise MeterUnavailable("the command meter needs a command (profile `energy_command`)")
        self.argv = shlex.split(command)
        value, unit = self._read()
        self.is_counter = unit == "j"

    def _read(self) -> tuple[float, str]:
        try:
            out = subprocess.run(self.argv, capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise MeterUnavailable(f"energy command {self.argv[0]!r} failed: {exc}") from None
        match = re.search(r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)", out)
        if not match:
            raise MeterUnavailable(f"energy command {self.argv[0]!r} printed no number: {out[:60]!r}")
        unit = match.group(2).lower()
        scale = {"": 1.0, "w": 1.0, "mw": 1e-3, "j": 1.0, "mj": 1e-3, "wh": 3600.0}.get(unit)
        if scale is None:
            raise MeterUnavailable(f"energy command printed an unknown unit {match.group(2)!r}")
        return float(match.group(1)) * scale, ("j" if unit in ("j", "mj", "wh") else "w")

    def read_w(self) -> float:
        return self._read()[0]

    def start(self) -> None:
        if self.is_counter:
            self._j0 = self._read()[0]
        else:
            super().start()

    def stop(self) -> float:
        return self._read()[0] - self._j0 if self.is_counter else super().stop()

    def idle_power_w(self, seconds: float) -> float:
        if not self.is_counter:
            return super().idle_power_w(seconds)
        t0, j0 = time.monotonic(), self._read()[0]
        time.sleep(max(seconds, 0.0))
        return (self._read()[0] - j0) / max(time.monotonic() - t0, 1e-9)


class EstimateMeter:
    """Process CPU time (user + system, all threads) x watts per busy core. An estimate."""

    def __init__(self, watts_per_core: float | None = None, **_):
        source = "profile" if watts_per_core else "default"
        self.watts_per_core = float(watts_per_core or DEFAULT_WATTS_PER_CORE)
        self.method = f"estimate:cpu-time x {self.watts_per_core:g} W/core ({source})"

    @staticmethod
    def _cpu_s() -> float:
        # user + system CPU time of every thread of this process, at ns resolution
        # (CLOCK_PROCESS_CPUTIME_ID); os.times() counts in 10 ms clock ticks, which made
        # short windows read 0 J or one tick.
        return time.process_time()

    def idle_power_w(self, seconds: float) -> float:
        return 0.0  # only this process's CPU time is counted: idle is excluded by construction

    def start(self) -> None:
        self._c0 = self._cpu_s()

    def stop(self) -> float:
        return (self._cpu_s() - self._c0) * self.watts_per_core


METERS = {"rapl": RaplMeter, "nvml": NvmlMeter, "hwmon": HwmonMeter, "command": CommandMeter,
          "estimate": EstimateMeter}


def open_meter(name: str, watts_per_core: float | None = None, command: str | None = None,
               **roots):
    """The meter called `name` (`auto`: the first available in AUTO_ORDER; `none`: None).

    Raises MeterUnavailable when a meter named explicitly cannot work here, ValueError for an
    unknown name. `roots` (rapl `root=`, hwmon `root=`) exist for tests on generated folders.
    """
    if name == "none":
        return None
    options = dict(watts_per_core=watts_per_core, command=command)
    if name == "auto":
        for candidate in AUTO_ORDER:
            try:
                return METERS[candidate](**options, **roots.get(candidate, {}))
            except MeterUnavailable:
                continue
    if name not in METERS:
        raise ValueError(f"unknown energy meter {name!r} (choose: auto, none, {', '.join(METERS)})")
    return METERS[name](**options, **roots.get(name, {}))


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
