"""Peak memory of the runner is its own, not its parent's."""

import subprocess
import sys
from pathlib import Path

import edgekd.benchmarks.memory as memory


def test_peak_rss_is_not_inherited_from_a_big_parent():
    ballast = bytearray(600 * 1024 * 1024)  # the parent holds ~600 MB when it starts the child
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = (f"import sys; sys.path.insert(0, {str(Path(memory.__file__).parent)!r}); "
            "import memory; print(memory.max_rss_bytes())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    del ballast
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 200 * 1024 * 1024


def test_sampler_sees_an_allocation():
    sampler = memory.RssSampler(interval_s=0.005).start()
    sampler.begin_window()
    block = bytearray(150 * 1024 * 1024)
    block[::4096] = b"y" * len(block[::4096])
    peak = sampler.end_window()
    sampler.stop()
    del block
    assert peak >= 150 * 1024 * 1024
    assert memory.max_rss_bytes() >= peak * 0.9
