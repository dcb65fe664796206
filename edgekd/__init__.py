"""edgekd: distil a compact student from a teacher, export it for edge runtimes, benchmark both.

Heavy libraries (torch, transformers, runtimes) are imported lazily inside the functions that
need them, so `import edgekd` and `edgekd --help` stay fast.
"""

__version__ = "0.1.0"
