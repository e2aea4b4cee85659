"""Frames in: camera and file readers, sampling to the model's rate, bounded buffers, sliding windows, and
opening, probing and decoding stored videos."""
