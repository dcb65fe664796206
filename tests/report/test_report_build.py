

def test_hardware_comparison_names_the_machine_the_runner_described():
    from edgekd.report.hardware import compare_targets

    entry = {"name": "student-onnx-fp32", "target": "board", "status": "ok", "threads": 1,
             "batch_size": 1, "seq_len": 128, "latency_ms": {"p50": 2.0, "p99": 3.0, "n": 10, "mean": 2.1},
             "samples_ms": [2.0] * 10, "host": "laptop", "cpu": {"model": "Laptop CPU", "cores": 8},
             "environment": {"host": "rpi5", "cpu": {"model": "Cortex-A76", "cores_logical": 4,
                                                      "flags": ["neon", "asimddp"]}}}
    old = {**entry, "target": "local", "environment": None}
    hardware = compare_targets([{"run": "a", "entries": [entry]}, {"run": "b", "entries": [old]}])
    board, local = hardware["environments"]["board"], hardware["environments"]["local"]
    assert board["host"] == "rpi5" and board["cpu"]["model"] == "Cortex-A76" and board["cpu"]["cores"] == 4
    assert local["host"] == "laptop" and local["cpu"]["model"] == "Laptop CPU"
