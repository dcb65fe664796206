"""Recipes shipped with edgekd (`bbc-news.yaml` is the built-in default)."""
