"""Detector training on the synthetic world and its evaluation (box AP, attribute accuracy)."""
