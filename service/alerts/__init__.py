"""Scores to what an operator sees: the alert machine and its episodes, their stored pictures, the heatmap,
and what the dashboard keeps of recent frames."""
