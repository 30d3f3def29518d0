"""Robustness measurements (issue 6, "Robustness, measured"): scripts that print
figures. Each has a bounded version in ``tests/robustness``; see docs/robustness.md."""
