"""Prometheus metrics in a per-app registry (two apps in one process never share counters).

Base units (seconds), counters end in _total, labels are low-cardinality: stream id, model, state.
"""

from __future__ import annotations

import contextlib
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from service.core.messages import Verdict

VERDICTS = (*get_args(Verdict), "cleared")  # mnad_alert_reviews_total's verdicts: a verdict or one taken back

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.frames_read = Counter("mnad_frames_read_total", "Frames decoded from the source", ["stream"], registry=r)
        self.frames_scored = Counter("mnad_frames_scored_total", "Frames the model scored", ["stream"], registry=r)
        self.frames_dropped = Counter(
            "mnad_frames_dropped_total", "Frames dropped from a full buffer (inference behind)", ["stream"], registry=r
        )
        self.decode_errors = Counter(
            "mnad_decode_errors_total", "Failed opens and reads of a source", ["stream"], registry=r
        )
        self.reconnects = Counter("mnad_reconnects_total", "Reconnect attempts to a source", ["stream"], registry=r)
        self.reconnect_delay = Gauge(
            "mnad_reconnect_delay_seconds",
            "Wait before the next reconnect (0 while connecting or live)",
            ["stream"],
            registry=r,
        )
        self.stream_up = Gauge("mnad_stream_up", "1 while the source delivers frames", ["stream"], registry=r)
        self.anomaly_score = Gauge("mnad_anomaly_score", "Latest anomaly score (0..1)", ["stream"], registry=r)
        self.alert_open = Gauge("mnad_alert_open", "1 while an anomaly episode is open", ["stream"], registry=r)
        self.inference_seconds = Histogram(
            "mnad_inference_seconds", "Wall time of one inference batch", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "mnad_inference_batch_size", "Windows per inference batch", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.end_to_end_seconds = Histogram(
            "mnad_end_to_end_seconds", "Frame capture to WebSocket send", buckets=LATENCY_BUCKETS, registry=r
        )
        self.ws_clients = Gauge("mnad_websocket_clients", "Connected WebSocket subscribers", registry=r)
        self.ws_dropped = Counter(
            "mnad_websocket_dropped_messages_total",
            "Messages dropped for slow WebSocket subscribers",
            registry=r,
        )
        self.alerts = Counter("mnad_alerts_total", "Anomaly episodes opened", ["stream"], registry=r)
        self.calibrations = Counter(
            "mnad_calibrations_total", "Calibrations fitted on a stream's own normal footage", ["stream"], registry=r
        )
        self.upload_jobs = Gauge("mnad_upload_jobs", "Upload jobs by state", ["state"], registry=r)
        self.upload_rejected = Counter(
            "mnad_upload_rejected_total", "Uploads refused (too large, not a video, malformed)", ["reason"], registry=r
        )
        self.refused = Counter(
            "mnad_requests_refused_total",
            "Requests refused before any work (auth, origin, bad body)",
            ["reason"],
            registry=r,
        )
        self.sources_refused = Counter(
            "mnad_sources_refused_total", "Stream URLs refused by the source policy", ["stage"], registry=r
        )
        self.webhook_deliveries = Counter(
            "mnad_webhook_deliveries_total",
            "Alert webhook deliveries by outcome: delivered, refused (a status no retry changes), failed (still"
            " failing when the alert reached alert_webhook_max_age_s)",
            ["outcome"],
            registry=r,
        )
        self.webhook_backlog = Gauge(
            "mnad_webhook_backlog",
            "Alert events in the outbox not yet sent to a webhook URL (by its place in alert_webhooks), counted by"
            " the node that sends them",
            ["receiver"],
            registry=r,
        )
        self.alert_reviews = Counter(
            "mnad_alert_reviews_total",
            "Operators' verdicts on a stream's alerts: false_alarm, confirmed, cleared (a verdict taken back)",
            ["stream", "verdict"],
            registry=r,
        )
        self.model_info = Info("mnad_model", "Served models", ["model"], registry=r)
        for state in ("queued", "running", "done", "failed"):
            self.upload_jobs.labels(state).set(0)
        for outcome in ("delivered", "refused", "failed"):  # present from the start, for rate() and alerts
            self.webhook_deliveries.labels(outcome)

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.inference_seconds.labels(model).observe(seconds)
        self.batch_size.labels(model).observe(size)

    def forget_stream(self, stream: str) -> None:
        for metric in (self.frames_read, self.frames_scored, self.frames_dropped, self.decode_errors,
                       self.reconnects, self.reconnect_delay, self.stream_up, self.anomaly_score, self.alert_open,
                       self.alerts, self.calibrations):  # fmt: skip
            with contextlib.suppress(KeyError):
                metric.remove(stream)
        for verdict in VERDICTS:
            with contextlib.suppress(KeyError):
                self.alert_reviews.remove(stream, verdict)
