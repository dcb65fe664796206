"""Distillation: losses, the teacher cache and the trainer."""
