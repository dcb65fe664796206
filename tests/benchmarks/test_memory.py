"""Peak memory of the runner is its own, not its parent's."""

import subprocess
import sys
import threading
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


def test_proc_reader_is_safe_from_two_threads_at_once():
    # The runner's sampler thread and its measuring thread read RSS at the same time; on a
    # device without psutil a shared file position once made one of them read an empty file.
    read, errors = memory._rss_reader(use_psutil=False), []

    def hammer():
        try:
            for _ in range(20_000):
                assert read() > 0
        except Exception as exc:  # noqa: BLE001 - any failure in a thread is the finding
            errors.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
