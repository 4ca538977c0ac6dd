"""The application layer: one method per use case (load, decide, save) over the aggregates, and
the services that run beside it (SLA timers, dead-letter replay)."""
