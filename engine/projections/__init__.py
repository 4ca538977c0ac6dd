"""Read models in PostgreSQL, derived from the notification log in batches."""
