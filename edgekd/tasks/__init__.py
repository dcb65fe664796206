"""Tasks: one module per task (`text_classification.py`, ...), chosen by the recipe's `task:`."""
