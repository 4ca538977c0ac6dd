"""CLI command implementations: parse nothing, decide nothing; call the engine, print."""
