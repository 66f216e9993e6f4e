"""Prometheus metrics in a registry of the app's own (several apps in one process do not collide)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

GRAPHS = ("image", "text")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "paddle_mm_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "paddle_mm_request_seconds",
            "request latency by route",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "paddle_mm_batch_rows",
            "rows per model call",
            ["graph"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.batch_seconds = Histogram("paddle_mm_batch_seconds", "model call time", ["graph"], registry=self.registry)
        self.queue = Gauge("paddle_mm_queue_rows", "rows waiting for the model", ["graph"], registry=self.registry)
        self.model = Gauge(
            "paddle_mm_model_sequence", "package sequence being served", ["model", "version"], registry=self.registry
        )
        self.reloads = Counter("paddle_mm_reloads", "package reloads by result", ["result"], registry=self.registry)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, graph: str, rows: int, seconds: float) -> None:
        self.batch_rows.labels(graph).observe(rows)
        self.batch_seconds.labels(graph).observe(seconds)

    def queue_depth(self, depth: Callable[[str], int]) -> None:
        for graph in GRAPHS:
            self.queue.labels(graph).set_function(lambda g=graph: depth(g))

    def set_model(self, state) -> None:
        self.model.clear()
        self.model.labels(state.name, state.version).set(state.sequence)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
