"""The alert machine lives in `model.alerts`: `evaluate` runs the same one over labelled clips."""

from model.alerts import AlertMachine, AlertPolicy, Episode

__all__ = ["AlertMachine", "AlertPolicy", "Episode"]
