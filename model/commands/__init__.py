"""The command-line tools (`train`, `evaluate`, `calibrate`): library code in model/ imports none of them."""
