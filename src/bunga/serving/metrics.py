"""Prometheus metrics, one registry per app (prometheus-client, not hand-written text)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._predicted: dict[tuple[str, str, str], Any] = {}
        r = self.registry
        self.requests = Counter("bunga_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "bunga_request_seconds", "Request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.predictions = Counter(
            "bunga_predictions", "Predictions by class", ["kind", "species", "version"], registry=r
        )
        self.unrecognised = Counter("bunga_unrecognised_photos", "Photos refused as unknown species", registry=r)
        self.photo_answers = Counter(
            "bunga_photo_answers",
            "Photo answers by band (sure, possible, not_recognised, not_a_flower) and arm (champion, "
            "challenger; phone: answers phones computed and reported, a claim)",
            ["band", "arm"],
            registry=r,
        )
        self.observations = Counter(
            "bunga_observations",
            "Observations (photos of one plant) answered, by number of photos",
            ["photos"],
            registry=r,
        )
        self.feedback = Counter("bunga_feedback", "Feedback records stored", ["kind"], registry=r)
        self.model_version = Gauge(
            "bunga_model_version_info",
            "Model version in use (1 = serving)",
            ["kind", "alias", "name", "version"],
            registry=r,
        )
        self.photo_batch = Histogram(
            "bunga_photo_batch_size",
            "Photos per model call (adaptive micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.photo_batch_wait = Histogram(
            "bunga_photo_batch_wait_seconds",
            "How long the first photo of a batch waited for others",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        self.inflight = Gauge("bunga_requests_in_flight", "Requests being handled", registry=r)
        self.downloads = Gauge("bunga_downloads_in_flight", "File downloads being sent (their own slots)", registry=r)
        self.rejected = Counter("bunga_requests_rejected", "Requests refused by a limit", ["reason"], registry=r)
        self.log_dropped = Counter(
            "bunga_prediction_log_dropped", "Prediction log records dropped (queue full or store down)", registry=r
        )
        self.inbox_bytes = Gauge("bunga_inbox_bytes", "Bytes stored in the feedback inbox", registry=r)
        self.inbox_files = Gauge("bunga_inbox_files", "Files stored in the feedback inbox", registry=r)
        self.inbox_limit_bytes = Gauge("bunga_inbox_limit_bytes", "The feedback inbox's byte quota", registry=r)

    def predicted(self, kind: str, species: str, version: str) -> None:
        """Count one prediction (label lookups are cached: the hot path only increments)."""
        key = (kind, species, version)
        child = self._predicted.get(key)
        if child is None:
            child = self._predicted[key] = self.predictions.labels(kind, species, version)
        child.inc()

    def batched(self, photos: int, waited: float) -> None:
        """Record one model call of the photo batcher."""
        self.photo_batch.observe(photos)
        self.photo_batch_wait.observe(waited)
