"""Frames to scores: the model host, the batching inference engine, and the live streams and upload jobs
that feed it and take its scores on."""
