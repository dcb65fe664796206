"""The benchmark harness: on-device runner, statistics, meters, reports, regression compare."""
