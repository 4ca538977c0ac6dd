"""PostgreSQL adapters: the database and its psycopg workaround, the chained recorder, the key
store and the sealing mapper, the dead-letter store, migrations, dependent views, verify."""
