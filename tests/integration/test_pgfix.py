"""A large batch over the embedded server's Unix socket must not deadlock
(see engine/postgres/pgfix.py).

Each check runs in a subprocess with a deadline, so a regression fails the test instead of
hanging the suite. The embedded server is started here on purpose: CI's server is reached over
TCP, whose larger buffers hide the bug.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_with_deadline(code: str, tmp_path: Path | str, seconds: int = 90) -> str:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=seconds,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"deadlocked: no result within {seconds} s") from exc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_one_big_pipelined_statement_then_sync_completes(tmp_path: Path) -> None:
    out = run_with_deadline(
        """
        import sys
        from pathlib import Path
        import psycopg
        from engine.postgres import db, pgfix
        assert pgfix.apply()
        d = db.embedded(Path(sys.argv[1]), "public")
        assert d.host.startswith("/"), d.host  # a Unix socket, where the bug shows
        with psycopg.connect(f"host={d.host} port={d.port} dbname=postgres user=postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE big (body bytea)")
            for _ in range(3):
                with conn.pipeline() as p, conn.transaction():
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO big SELECT unnest(%s::bytea[])",
                                    ([b"x" * 1500] * 4000,))
                        p.sync()
            print(conn.execute("SELECT count(*) FROM big").fetchone()[0])
        """,
        tmp_path,
    )
    assert out.strip() == "12000"


def test_engine_ingests_a_large_batch_on_the_embedded_server(tmp_path: Path) -> None:
    out = run_with_deadline(
        """
        import sys
        from pathlib import Path
        from engine.domain.generator import generate
        from engine.domain.contract import parse_event
        from engine.runtime import open_runtime
        from engine.settings import Settings
        import json
        events = [parse_event(json.dumps(e).encode()) for e in generate(300, 7)]
        settings = Settings(home=Path(sys.argv[1]) / "home")
        with open_runtime(settings) as rt:
            result = rt.app.ingest(events)
            print(len(events), result.accepted + result.duplicates)
        """,
        tmp_path,
    )
    total, handled = out.split()
    assert int(total) > 3000
    assert handled == total


def test_a_parse_skipped_by_a_failed_pipeline_is_not_taken_for_a_prepared_statement(
    server_url: str,
) -> None:
    """psycopg prepares a query on its 6th use; queued behind a failing statement, the server
    skips that Parse. Unfixed, every later use of the query fails with "prepared statement
    _pg3_N does not exist". The error is caught inside the transaction, as eventsourcing's
    recorder does (so psycopg does not roll back and clear its cache)."""
    import psycopg

    from engine.postgres import pgfix

    assert pgfix.apply()

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE once (id int PRIMARY KEY)")
        conn.execute("INSERT INTO once VALUES (1)")
        query = "SELECT %s::int + 1"
        for i in range(5):
            conn.execute(query, (i,))
        caught: Exception | None = None
        with conn.pipeline() as p, conn.transaction(), conn.cursor() as cur:
            try:  # the violation arrives after both statements are queued, at the sync
                cur.execute("INSERT INTO once SELECT 1 FROM pg_sleep(0.3)")
                cur.execute(query, (41,))  # the 6th use: its Parse is skipped
                p.sync()
            except psycopg.errors.UniqueViolation as exc:
                caught = exc
        assert caught is not None
        row = conn.execute(query, (41,)).fetchone()
    assert row == (42,)


def test_importing_the_engine_patches_nothing_its_doors_to_postgres_do(server_url: str) -> None:
    """No import side effect: the fix is applied by the calls that make connections,
    `Database.connect` (the engine's own) and `Database.eventsourcing_env` (eventsourcing's)."""
    out = run_with_deadline(
        """
        import sys
        from psycopg import _pipeline_base
        from psycopg._preparing import PrepareManager

        def patched():
            return (
                getattr(PrepareManager.maybe_add_to_cache, "_leadengine_fixed", False),
                _pipeline_base.BasePipeline._sync_gen.__module__ == "engine.postgres.pgfix",
            )

        import engine.cli.main, engine.runtime, engine.consumers.kafka  # noqa: F401
        from engine.postgres import db
        print(patched())
        db.from_url(sys.argv[1], "public").eventsourcing_env()
        print(patched())
        """,
        server_url,
    )
    assert out.split("\n")[:2] == ["(False, False)", "(True, True)"]


def test_the_engines_own_connection_applies_the_fix(server_url: str) -> None:
    out = run_with_deadline(
        """
        import sys
        from psycopg._preparing import PrepareManager
        from engine.postgres import db
        before = getattr(PrepareManager.maybe_add_to_cache, "_leadengine_fixed", False)
        with db.from_url(sys.argv[1], "public").connect() as conn:
            conn.execute("SELECT 1")
        print(before, getattr(PrepareManager.maybe_add_to_cache, "_leadengine_fixed", False))
        """,
        server_url,
    )
    assert out.split() == ["False", "True"]
