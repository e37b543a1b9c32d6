"""Prometheus metrics, one registry per app (no global state, so several apps or tests never
collide). Served at `/metrics`; names follow Prometheus conventions (`_total`, `_seconds`)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from server.completion.outcome import Outcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (100, 250, 500, 1000, 2000, 3000, 5000, 8000, 16000, 32000)


class Metrics:
    def __init__(self, active_streams: Callable[[], float], replica: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # An info metric, not a label on every series: each scrape target is one replica, and
        # the scraper's own target labels (pod, instance) stay the join key (Prometheus'
        # guidance for build and identity facts).
        Info(
            "perception_llm_replica",
            "This replica's name (PERCEPTION_LLM_REPLICA, default hostname:port).",
            registry=self.registry,
        ).info({"replica": replica})
        self.requests = Counter(
            "perception_llm_requests_total",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.completions = Counter(
            "perception_llm_completions_total",
            "Chat completions by outcome: " + ", ".join(Outcome) + ".",
            ["outcome"],
            registry=self.registry,
        )
        self.cancellations = Counter(
            "perception_llm_cancellations_total",
            "Completions stopped before their end, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "perception_llm_upstream_errors_total",
            "Failures of the response model, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.upstream_calls_saved = Counter(
            "perception_llm_upstream_calls_saved_total",
            "Completions answered from an identical in-flight request's upstream generation.",
            registry=self.registry,
        )
        self.capture_dropped = Counter(
            "perception_llm_capture_dropped_total",
            "Calls the capture could not record: queue_full or store_error.",
            ["reason"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "perception_llm_time_to_first_token_seconds",
            "From request to the first content or tool-call token sent.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "perception_llm_completion_duration_seconds",
            "From request to the end of the completion.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Histogram(
            "perception_llm_prompt_tokens",
            "Estimated prompt tokens sent to the response model per completion.",
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "perception_llm_active_streams",
            "Completions in flight.",
            registry=self.registry,
        )
        self.active_streams.set_function(active_streams)

    def upstream_errors_by_kind(self, kind: str) -> None:
        self.upstream_errors.labels(kind).inc()
