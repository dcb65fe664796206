"""The benchmark harness: the on-device runner and its runtime adapters, typed contracts,
statistics, memory and energy meters, and the host orchestration (`bench.py`, `command.py`)."""
