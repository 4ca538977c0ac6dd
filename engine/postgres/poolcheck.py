"""The connection pool's check on checkout, without a round trip per checkout.

eventsourcing's pre-ping (`POSTGRES_PRE_PING`) sends an empty query every time a connection
leaves the pool: a consumer checks out a connection for every read and every save, thousands
per run, so a profile of `consume --until-caught-up` found 2,071 pings taking 12 of its 90 s
on a loaded machine (each a round trip through PostgreSQL's scheduler). What the ping is for
is a connection the server has dropped (a restart, `pg_terminate_backend`, an idle timeout),
so that it is not handed to a caller as if it were good.

`quiet_check` asks the socket instead. An idle connection is sent nothing unasked by a healthy
server; when the server ends a session it writes its reason (FATAL 57P01 and the like) and
closes, and when the server process dies the kernel closes the socket: either way the socket
turns readable. So: a connection psycopg knows is closed or broken is refused at once; one
whose socket has something to read is pinged (which reads it and fails if the server is gone);
any other goes out without a round trip. A notification on a listening connection also makes
it readable: it is pinged, which is what the pre-ping did for every checkout.

A checkout that finds the server ended its connection takes the next one at once
(`_checkout`): psycopg_pool's own loop slept after each failed check (1 s, then 2 s, ...), so
after `pg_terminate_backend` of every pooled connection (a failover, a restart) the first
request waited the pool timeout (3 s) and failed, though the server was up. A server that is
down shows as no connection to hand out (the pool's wait), not as failed checks; should fresh
connections keep failing the check anyway, past one failure per connection the pool may hold,
the pool's own loop (with its sleeps) takes over.

What it does not see, as the pre-ping did not prevent either: a peer that vanished without a
word (a network partition) shows nothing on the socket; the first statement then fails with an
`OperationalError`, which the services treat as an outage and retry on a fresh connection
(engine/consumers/retry.py; the pool discards a broken connection when it comes back).
"""

from __future__ import annotations

import select
from functools import partial
from time import monotonic
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool


def quiet_check(conn: psycopg.Connection[Any]) -> None:
    """Raise if `conn` is not fit to hand out; a round trip only if the server wrote to it."""
    if conn.closed or conn.broken or conn.pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed or broken")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


def install(pool: Any) -> None:
    """Check `pool`'s connections on checkout with `quiet_check` (psycopg_pool keeps the
    callback it was made with in `_check`; eventsourcing makes the pool, so it is set here)."""
    if not hasattr(pool, "_check"):  # pragma: no cover - psycopg_pool's layout changed
        raise RuntimeError("psycopg_pool's ConnectionPool has no check callback to replace")
    pool._check = quiet_check
    pool._getconn_with_check_loop = partial(_checkout, pool, pool._getconn_with_check_loop)


def _checkout(pool: Any, backing_off: Any, deadline: float) -> Any:
    """psycopg_pool's `_getconn_with_check_loop` without its sleep after a connection that
    failed the check: that connection is discarded (the pool's worker makes a new one) and the
    next is taken at once; more failures than the pool holds connections: `backing_off`."""
    for _ in range(pool.max_size + 1):
        conn = pool._getconn_unchecked(deadline - monotonic())
        try:
            pool._check_connection(conn)
        except BaseException as exc:  # discarded, as the pool's loop does
            pool._putconn(conn, from_getconn=True)
            if not isinstance(exc, Exception):  # cancelled, interrupted: no second try
                raise
            continue
        return conn
    return backing_off(deadline)
