"""Touchpoint contribution (attribution) and funnel KPIs, computed from the read model's facts.

Pure functions over `Journey` values do the arithmetic (unit-tested in memory); `load` reads
the journeys from PostgreSQL as the engine knew them at any moment (`as_of`).
"""
