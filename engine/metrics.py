"""Prometheus metrics of the consumer and the projector (`LEADENGINE_METRICS_PORT` serves them).

Consumer: records, accepted, duplicates, conflicts, unknown fields kept, dead-lettered (counters,
by topic), batch latency (histogram) and lag per partition (the broker's high watermark minus the
stored position: an estimate for dashboards, never used to decide anything). Projector: events
projected, batch latency, position and lag against the head of the event log, parked leads per
projection. Relay: decisions published, batch latency, position and lag per outbound topic.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from engine.logs import get_logger

log = get_logger(__name__)

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

consumer_records = Counter(
    "leadengine_consumer_records", "Kafka records read (valid or not)", ["topic"]
)
consumer_accepted = Counter(
    "leadengine_consumer_accepted", "Events recorded (new facts)", ["topic"]
)
consumer_duplicates = Counter(
    "leadengine_consumer_duplicates", "Events already recorded (redelivery)", ["topic"]
)
consumer_ignored = Counter(
    "leadengine_consumer_ignored",
    "Events of forgotten leads dropped by the rules (privacy.after_erasure: drop)",
    ["topic"],
)
consumer_conflicts = Counter(
    "leadengine_consumer_conflicts",
    "Records whose (source, id) was stored with other content (dead-lettered)",
    ["topic"],
)
consumer_unknown_fields = Counter(
    "leadengine_consumer_unknown_fields",
    "Fields the contract does not name, kept with accepted events (rules contract)",
    ["topic"],
)
consumer_dead_lettered = Counter(
    "leadengine_consumer_dead_lettered", "Records sent to the dead-letter topic", ["topic"]
)
consumer_batch_seconds = Histogram(
    "leadengine_consumer_batch_seconds",
    "Validate + record + commit one partition batch",
    ["topic"],
    buckets=_BUCKETS,
)
consumer_lag = Gauge(
    "leadengine_consumer_lag",
    "Records behind the broker's high watermark, per partition (estimate)",
    ["topic", "partition"],
)
retries = Counter(
    "leadengine_retries",
    "Attempts retried because the database or the broker was unreachable",
    ["what"],
)
outages = Counter(
    "leadengine_outages", "Times the database or the broker became unreachable", ["what"]
)
projector_events = Counter("leadengine_projector_events", "Events projected into the read model")
projector_batch_seconds = Histogram(
    "leadengine_projector_batch_seconds", "Project and commit one batch", buckets=_BUCKETS
)
projection_position = Gauge("leadengine_projection_position", "Last projected notification id")
projection_lag = Gauge("leadengine_projection_lag", "Events in the log not yet projected")
parked_leads = Gauge(
    "leadengine_parked_leads",
    "Leads (or campaigns) a projection set aside after failing to fold or write them",
    ["projection"],
)

relay_published = Counter(
    "leadengine_relay_published", "Decisions published to the outbound topic", ["topic"]
)
relay_batch_seconds = Histogram(
    "leadengine_relay_batch_seconds",
    "Read, publish, wait for the broker's acks and commit one relay batch",
    buckets=_BUCKETS,
)
relay_position = Gauge(
    "leadengine_relay_position", "Last notification id relayed (and acknowledged)", ["topic"]
)
relay_lag = Gauge("leadengine_relay_lag", "Events in the log not yet relayed", ["topic"])


def serve(port: int | None, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` (None: do nothing)."""
    if port is None:
        return
    start_http_server(port, addr=addr)
    log.info("metrics served", port=port, path="/metrics")
