"""Experiment harnesses that measure one question in isolation (docs/matching.md)."""
