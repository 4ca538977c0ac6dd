"""The domain: pure lifecycle, facts, scoring, SLA, rules, routing choice and the folds over a
lead's history (as-of, what-if). No database, broker, CLI or read-side imports (import-linter)."""
