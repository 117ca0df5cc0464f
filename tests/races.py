"""Two real connections against each other: the first call runs and keeps its transaction
open, the second starts on another connection, and once the second waits on a lock (or
ended) the first commits (or rolls back when it failed; or its server process is killed, as
when its engine dies). The race tests of the phase functions and of image_move_links use it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

# A call on a connection: its answer, an int when it succeeded, else the error's SQLSTATE.
Call = Callable[[psycopg.Connection[Any]], "int | str"]


def race(dsn: str, first: Call, second: Call,
         kill_first: bool = False) -> tuple[int | str, int | str, bool]:
    """Both answers, and whether the second call waited for the first."""
    a = psycopg.connect(dsn, row_factory=dict_row)
    b = psycopg.connect(dsn, row_factory=dict_row)
    watch = psycopg.connect(dsn, row_factory=dict_row, autocommit=True)
    try:
        b.execute("SET lock_timeout = '20s'")
        b.commit()
        first_answer = first(a)
        answer: dict[str, int | str] = {}
        thread = threading.Thread(target=lambda: answer.setdefault("b", second(b)))
        thread.start()
        waited = False
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            row = watch.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                (b.info.backend_pid,)).fetchone()
            if row and row["wait_event_type"] == "Lock":
                waited = True
                break
            time.sleep(0.005)
        if kill_first:
            watch.execute("SELECT pg_terminate_backend(%s)", (a.info.backend_pid,))
        else:
            a.commit() if isinstance(first_answer, int) else a.rollback()
        thread.join(30)
        second_answer = answer["b"]
        b.commit() if isinstance(second_answer, int) else b.rollback()
        return first_answer, second_answer, waited
    finally:
        for c in (a, b, watch):
            c.close()
