"""Per-stream series in /metrics: a removed stream takes all of its series with it, its alert reviews included."""

from __future__ import annotations

from prometheus_client import generate_latest

from service.core.metrics import VERDICTS, Metrics


def test_a_removed_stream_leaves_no_series_behind_its_reviews_included() -> None:
    metrics = Metrics()
    for stream in ("gate", "lobby"):
        metrics.alerts.labels(stream).inc()
        for verdict in VERDICTS:
            metrics.alert_reviews.labels(stream, verdict).inc()
    metrics.alert_reviews.labels("lobby", "false_alarm").inc()
    text = generate_latest(metrics.registry).decode()
    assert 'mnad_alert_reviews_total{stream="lobby",verdict="false_alarm"} 2.0' in text
    metrics.forget_stream("gate")
    text = generate_latest(metrics.registry).decode()
    assert 'stream="gate"' not in text
    assert 'mnad_alert_reviews_total{stream="lobby",verdict="confirmed"} 1.0' in text
    metrics.forget_stream("gate")  # twice: nothing left to remove, no error
