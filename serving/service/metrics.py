"""Prometheus metrics of the service, on a registry of their own (one per app; ``/metrics`` renders it)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("cobuy_requests", "Requests answered, by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.errors = Counter("cobuy_request_errors", "Requests answered with an error (status >= 400), by endpoint",
                              ["endpoint", "status"], registry=r)
        self.latency = Histogram("cobuy_request_seconds", "Request latency in the service, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("cobuy_stage_seconds", "Time inside a request by stage (score, evidence, render)",
                               ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_info = Gauge("cobuy_model_info", "The model version served (1 on the one served)",
                                ["name", "version", "family", "format"], registry=r)
        self.model_version = Gauge("cobuy_model_version", "The registered version number served", registry=r)
        self.reloads = Counter("cobuy_model_reloads", "Model loads by result", ["result"], registry=r)
        self.load_seconds = Gauge("cobuy_model_load_seconds", "Seconds the served version took to load", registry=r)
        self.cache = Counter("cobuy_cache_requests", "Cache lookups by cache and result", ["cache", "result"],
                             registry=r)
        self._children: dict[tuple[str, int], tuple] = {}

    def cache_hook(self, cache: str):
        hit, miss = self.cache.labels(cache, "hit"), self.cache.labels(cache, "miss")
        return lambda was_hit: (hit if was_hit else miss).inc()

    def model_loaded(self, served, old) -> None:
        if old is not None:
            try:
                self.model_info.remove(old.name, old.version, old.info.family, old.info.format)
            except KeyError:
                pass
        self.model_info.labels(served.name, served.version, served.info.family, served.info.format).set(1)
        try:
            self.model_version.set(float(served.version))
        except ValueError:
            pass
        self.load_seconds.set(served.load_seconds)
        self.reloads.labels("ok").inc()

    def reload_failed(self) -> None:
        self.reloads.labels("failed").inc()

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._children.get((endpoint, status))
        if children is None:  # the labelled series of this endpoint and status, looked up once
            children = self._children[(endpoint, status)] = (
                self.requests.labels(endpoint, str(status)),
                self.errors.labels(endpoint, str(status)) if status >= 400 else None, self.latency.labels(endpoint))
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
