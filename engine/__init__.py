"""leadengine: an event-sourced lead lifecycle engine.

Facts (what upstream systems saw) are immutable events on a Lead aggregate; decisions (MQL) are
events the engine records with the rule version that made them; scores, stages and reports are
projections that can be replayed under any rules, as of any moment.
"""

__version__ = "0.1.0"
