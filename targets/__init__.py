"""Targets: one module per kind of device (`local.py`, `ssh.py`), found by name."""
