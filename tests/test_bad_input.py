"""Bad input, table-driven: every public SQL function and every command, given wrong ids
(unknown, malformed, of the wrong kind), NULLs, empty strings, very long and quoted/SQL aliases,
a domain of another pool, an inactive or full destination, the removal of a disk that is not
temporary. Each answers with a clear error (the package's SQLSTATE, or PostgreSQL's data or
integrity error naming the value; the command line: one line, its exit code) and leaves the
database as it was: the package's rows compared around every call, pg_dump around the whole.

Sequences are left out of the pg_dump comparison: PostgreSQL never rolls back nextval, so a
refused insert may leave a gap in audit_log_id (harmless, and the same in oVirt)."""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from movedisk import cli

# SQLSTATE classes that are a clear answer to bad input: the package's own (MD), data
# exceptions (22: malformed uuid, value too long, ...), integrity violations (23: a NULL key,
# an unknown referenced id). Anything else (XX internal, 42 undefined object, 21 cardinality,
# P0001 a RAISE without a code, 54 limits, 2F no RETURN) is a defect.
CLEAR = ("MD", "22", "23")
HOSTILE = "x'); DROP TABLE images; --\"\\"
LONG = "a" * 10_000

# Functions that legitimately change state on valid-looking input (a fresh id inserts a row):
# every Insert* of the engine's DAL; their bad variants (NULLs, unknown references, overlong
# text) are still checked to change nothing when they fail.
WRITES_ON_FRESH_INPUT = ("insert", "deletecommandentitiesolderthandate")


def table_digest_query(conn: psycopg.Connection[Any]) -> sql.Composed:
    tables = [r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = 'r' ORDER BY 1").fetchall()]
    parts = [sql.SQL("(SELECT {name} || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY "
                     "x::text)), '') FROM {t} x)").format(name=sql.Literal(t), t=sql.Identifier(t))
             for t in tables]
    return sql.SQL("SELECT md5(concat_ws(',', {}))").format(sql.SQL(", ").join(parts))


class Db:
    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.digest_q = table_digest_query(self.conn)

    def digest(self) -> str:
        return str(self.conn.execute(self.digest_q).fetchone()[0])

    def call(self, fn: str, types: list[str], args: list[Any]) -> tuple[str | None, str]:
        """(SQLSTATE or None, message) of ``SELECT * FROM fn(args)``."""
        q = sql.SQL("SELECT * FROM {}({})").format(
            sql.Identifier(fn), sql.SQL(", ").join(
                sql.SQL("%s::{}").format(sql.SQL(t)) for t in types))  # types from the catalog
        try:
            self.conn.execute(q, args).fetchall()
        except psycopg.Error as exc:
            return exc.sqlstate, str(getattr(exc.diag, "message_primary", exc))
        return None, ""


def functions(conn: psycopg.Connection[Any]) -> list[tuple[str, list[str], list[str], str]]:
    """(name, input argument types, names, volatility) of every function the package owns."""
    rows = conn.execute("""
        SELECT p.proname, ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t),
               coalesce(p.proargnames, '{}'), p.provolatile
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
          AND p.prorettype <> 'trigger'::regtype  -- called by its trigger only, never by a caller
        ORDER BY 1""").fetchall()
    return [(r[0], list(r[1]), list(r[2]), r[3]) for r in rows]


def neutral(t: str) -> Any:
    if t == "uuid":
        return uuid.uuid4()
    if t in ("character varying", "text", "character"):
        return "x"
    if t in ("integer", "bigint", "smallint", "numeric"):
        return 1
    if t == "boolean":
        return False
    if t.startswith("timestamp"):
        return datetime.now(timezone.utc)
    if t == "interval":
        return "1 hour"
    return None


TEXT = ("character varying", "text", "character")


def variants(types: list[str]) -> dict[str, list[Any]]:
    """Bad argument lists for a function of these input types."""
    out: dict[str, list[Any]] = {}
    if types:
        out["all NULL"] = [None] * len(types)
    out["unknown ids"] = [neutral(t) for t in types]
    if "uuid" in types:
        args = [neutral(t) for t in types]
        args[types.index("uuid")] = "not-a-uuid"
        out["malformed id"] = args
        args = [neutral(t) for t in types]
        args[types.index("uuid")] = ""
        out["empty id"] = args
    if any(t in TEXT for t in types):
        for name, value in (("empty text", ""), ("long text", LONG), ("SQL in text", HOSTILE)):
            out[name] = [value if t in TEXT else neutral(t) for t in types]
    if any(t in ("integer", "bigint", "smallint") for t in types):
        out["negative numbers"] = [-1 if t in ("integer", "bigint", "smallint") else neutral(t)
                                   for t in types]
    return out


def pg_dump(pg_cluster: Any, dsn: str) -> list[str]:
    out = subprocess.run([str(pg_cluster.binaries.program("pg_dump")), "-d", dsn],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if not line.startswith(("\\restrict", "\\unrestrict", "SELECT pg_catalog.setval"))]


TRIED: Counter[str] = Counter()


def test_every_public_function_answers_bad_input_clearly_and_changes_nothing(world) -> None:
    db = Db(world.dsn)
    problems = []
    fns = functions(db.conn)
    assert len(fns) > 100
    accepted_writes = 0
    after = db.digest()
    for name, types, _names, volatility in fns:
        for variant, args in variants(types).items():
            before = after
            state, message = db.call(name, types, args)
            TRIED["sql"] += 1
            after = db.digest()
            changed = after != before
            if state is not None and not state.startswith(CLEAR):
                problems.append(f"{name} ({variant}): unclear error {state}: {message}")
            if changed and (state is not None or volatility != "v"):
                problems.append(f"{name} ({variant}): changed the database ({state or 'no error'})")
            elif changed and not (name.startswith(WRITES_ON_FRESH_INPUT) and variant in (
                    "unknown ids", "empty text", "SQL in text", "negative numbers")):
                problems.append(f"{name} ({variant}): accepted bad input and changed the database")
            accepted_writes += changed
    assert not problems, f"{len(problems)} of {TRIED['sql']} calls:\n" + "\n".join(problems)
    assert accepted_writes > 0  # the digest sees a change (an Insert* given a fresh id)


def _feature_cases(world) -> list[tuple[str, str, list[Any], str]]:
    """(what, function, args, SQLSTATE) for the feature's functions, with real ids."""
    eng = world.engine()
    moving = eng.start(world.disk("vm1-os"), world.domain("D"))  # LOCKED, in flight
    tmp_disk = moving.temporary_disk_id
    tmp_image = world.rows("SELECT image_guid FROM images WHERE image_group_id = %s",
                           (tmp_disk,))[0]["image_guid"]
    disk, s, d, e = world.disk("vm1-data"), world.domain("S"), world.domain("D"), world.domain("E")
    image = world.rows("SELECT image_guid FROM images WHERE image_group_id = %s", (disk,))[0]["image_guid"]
    template = uuid.UUID(world.made.templates["tpl"])
    pool = uuid.UUID(world.made.data_centers["dc"])
    # Another pool's domain, an inactive domain (E), a full one (a fourth domain, no room).
    other_pool, other_sd, full = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    world.rows("SELECT Insertstorage_pool('', '', %s, 'other', 1, FALSE, 1, NULL, '4.7', 0, TRUE)",
               (other_pool,))
    for sd, p, name in ((other_sd, other_pool, "other-sd"), (full, pool, "full-sd")):
        world.rows("SELECT Insertstorage_domain_static(%s, 'x', %s, '', '', 1, 1, '5', 0, FALSE, "
                   "FALSE, NULL, NULL, 10, 5, 0, FALSE, 512)", (sd, name))
        world.rows("SELECT Insertstorage_domain_dynamic(%s, %s, 100)", (0 if sd == full else 100, sd))
        world.rows("SELECT Insertstorage_pool_iso_map(%s, %s, 3)", (sd, p))
    world.rows("SELECT Updatestorage_pool_iso_map_status(%s, %s, 6)", (e, pool))
    u = uuid.uuid4
    c = uuid.uuid4()
    owner = "prove:1:1"
    cases = [
        # CreateTemporaryDiskForMove(v_image_group_id, v_src_storage, v_dest_storage, ...)
        ("move: unknown disk", "createtemporarydiskformove", [u(), s, d, None, None], "MD001"),
        ("move: an image id, not a disk id", "createtemporarydiskformove", [image, s, d, None, None], "MD001"),
        ("move: a template id, not a disk id", "createtemporarydiskformove", [template, s, d, None, None], "MD001"),
        ("move: a domain id, not a disk id", "createtemporarydiskformove", [s, s, d, None, None], "MD001"),
        ("move: a temporary disk", "createtemporarydiskformove", [tmp_disk, s, d, None, None], "MD003"),
        ("move: a moving disk", "createtemporarydiskformove", [world.disk("vm1-os"), s, e, None, None], "MD003"),
        ("move: NULL disk", "createtemporarydiskformove", [None, s, d, None, None], "MD001"),
        ("move: NULL destination", "createtemporarydiskformove", [disk, s, None, None, None], "MD002"),
        ("move: wrong source", "createtemporarydiskformove", [disk, d, e, None, None], "MD002"),
        ("move: same domain", "createtemporarydiskformove", [disk, s, s, None, None], "MD002"),
        ("move: unknown destination", "createtemporarydiskformove", [disk, s, u(), None, None], "MD002"),
        ("move: a disk id as destination", "createtemporarydiskformove", [disk, s, disk, None, None], "MD002"),
        ("move: other pool's domain", "createtemporarydiskformove", [disk, s, other_sd, None, None], "MD002"),
        ("move: inactive destination", "createtemporarydiskformove", [disk, s, e, None, None], "MD002"),
        ("move: full destination", "createtemporarydiskformove", [disk, s, full, None, None], "MD007"),
        ("move: new disk id taken", "createtemporarydiskformove", [disk, s, d, world.disk("vm2-os"), None], "MD003"),
        # StartMoveDiskCommand(v_command_id, v_image_group_id, v_dest_storage, owner, lease, ...)
        ("start: unknown disk", "startmovediskcommand", [c, u(), d, owner, 30, None], "MD001"),
        ("start: template id", "startmovediskcommand", [c, template, d, owner, 30, None], "MD001"),
        ("start: temporary disk", "startmovediskcommand", [c, tmp_disk, d, owner, 30, None], "MD003"),
        ("start: other pool", "startmovediskcommand", [c, disk, other_sd, owner, 30, None], "MD002"),
        ("start: inactive", "startmovediskcommand", [c, disk, e, owner, 30, None], "MD002"),
        ("start: full", "startmovediskcommand", [c, disk, full, owner, 30, None], "MD007"),
        ("start: NULL command id", "startmovediskcommand", [None, disk, d, owner, 30, None], "23502"),
        ("start: command id in use", "startmovediskcommand", [moving.command_id, disk, d, owner, 30, None], "23505"),
        # Phase 3 and the ends on the wrong disk / move
        ("phase 3: a disk that is not moving", "updateimagegroupstoragedomain", [disk, s, d], "MD003"),
        ("phase 3: unknown disk", "updateimagegroupstoragedomain", [u(), s, d], "MD001"),
        ("phase 3: a temporary disk", "updateimagegroupstoragedomain", [tmp_disk, s, d], "MD003"),
        ("switch: unknown command", "switchmovediskcommand", [u(), owner, 30], "MD001"),
        ("switch: not the lease owner", "switchmovediskcommand", [moving.command_id, owner, 30], "MD003"),
        ("end: unknown command", "endmovediskcommandwithsuccess", [u(), owner], "MD001"),
        ("end: not the lease owner", "endmovediskcommandwithfailure", [moving.command_id, owner, "x"], "MD003"),
        # The temporary disk's functions given an original
        ("mark illegal: an original disk", "marktemporarydiskillegal", [disk, True], "MD006"),
        ("mark illegal: unknown disk", "marktemporarydiskillegal", [u(), True], "MD001"),
        ("remove: an original disk", "removetemporarydisk", [disk, True], "MD006"),
        ("remove: unknown disk", "removetemporarydisk", [u(), False], "MD001"),
        ("remove: a LOCKED temporary disk", "preparetemporarydiskremoval", [tmp_disk, owner, 30], "MD003"),
        ("remove: an original", "preparetemporarydiskremoval", [disk, owner, 30], "MD006"),
        ("remove: a template id", "preparetemporarydiskremoval", [template, owner, 30], "MD001"),
        ("remove: NULL", "preparetemporarydiskremoval", [None, owner, 30], "MD001"),
        ("removal plan: an original image", "getimagetobedeletedremovalplan", [image], "MD006"),
        ("removal plan: unknown image", "getimagetobedeletedremovalplan", [u()], "MD001"),
        ("removal plan: a disk id", "getimagetobedeletedremovalplan", [tmp_disk], "MD001"),
        ("row of an image: unknown image", "insertimagetobedeleted", [u(), image, disk, s, d], "23503"),
        ("row of an image: duplicate", "insertimagetobedeleted", [tmp_image, image, disk, s, d], "23505"),
        ("row of an image: NULL", "insertimagetobedeleted", [None, image, disk, s, d], "23502"),
        ("alias too long", "updatebasedisk", [disk, False, "Off", LONG, "", False, None, 0, None, 0,
                                              "None", None], "22001"),
    ]
    eng.store.conn.close()
    return [(what, fn, args, state) for what, fn, args, state in cases]


def test_the_feature_functions_refuse_wrong_ids_with_their_sqlstate(world, pg_cluster) -> None:
    cases = _feature_cases(world)
    db = Db(world.dsn)
    types_of = {name: types for name, types, _n, _v in functions(db.conn)}
    dump_before = pg_dump(pg_cluster, world.dsn)
    problems = []
    for what, fn, args, want in cases:
        types = types_of[fn]
        args = args + [None] * (len(types) - len(args))
        before = db.digest()
        state, message = db.call(fn, types, args)
        TRIED["feature"] += 1
        if state != want:
            problems.append(f"{what}: {fn} answered {state} ({message}), expected {want}")
        if db.digest() != before:
            problems.append(f"{what}: {fn} changed the database")
    assert not problems, "\n".join(problems)
    assert pg_dump(pg_cluster, world.dsn) == dump_before


def run_main(argv: list[str], env: dict[str, str], monkeypatch) -> tuple[int, str, str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2
            code = int(exc.code or 0)
        except Exception as exc:  # noqa: BLE001 - what a user would see as a traceback
            code, err = 1, io.StringIO(f"Traceback: {type(exc).__name__}: {exc}\nTraceback")
    return code, out.getvalue(), err.getvalue()


def test_every_command_refuses_bad_input_in_one_line_and_changes_nothing(world, pg_cluster, tmp_path,
                                                                         monkeypatch) -> None:
    cases = _feature_cases(world)  # the same other-pool, inactive and full domains
    del cases
    env = world.cli_env()
    for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "MOVEDISK_HOME"):
        monkeypatch.delenv(k, raising=False)
    disk, tmp = str(world.disk("vm1-data")), world.rows(
        "SELECT i.image_group_id FROM images i JOIN images_to_be_deleted t ON t.image_id = i.image_guid "
        "LIMIT 1")[0]["image_group_id"]
    d = str(world.domain("D"))
    other = world.rows("SELECT id FROM storage_domain_static WHERE storage_name = 'other-sd'")[0]["id"]
    full = world.rows("SELECT id FROM storage_domain_static WHERE storage_name = 'full-sd'")[0]["id"]
    template = world.made.templates["tpl"]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{ not json")
    bad_ref = tmp_path / "ref.json"
    bad_ref.write_text(json.dumps({"data_centers": [{"name": "z", "domains": [{"name": "a"}],
                                                     "vms": [{"name": "v", "disks": [
                                                         {"alias": "q", "domain": "nowhere"}]}]}]}))
    cases: list[tuple[list[str], int, str]] = [
        (["move", str(uuid.uuid4()), "--to", d], 3, "no disk has id"),
        (["move", "not-a-disk", "--to", d], 6, "neither a disk id"),
        (["move", "", "--to", d], 6, "neither a disk id"),
        (["move", LONG[:4000], "--to", d], 6, "neither a disk id"),
        (["move", HOSTILE, "--to", d], 6, "neither a disk id"),
        (["move", template, "--to", d], 3, "no disk has id"),
        (["move", str(tmp), "--to", d], 5, "temporary"),
        (["move", "vm1-os", "--to", d], 5, ""),  # the alias of a disk being moved
        (["move", disk, "--to", "nowhere"], 6, "neither a storage domain"),
        (["move", disk, "--to", ""], 6, "neither a storage domain"),
        (["move", disk, "--to", HOSTILE], 6, "neither a storage domain"),
        (["move", disk, "--to", str(uuid.uuid4())], 4, "no storage domain"),
        (["move", disk, "--to", disk], 4, "no storage domain"),
        (["move", disk, "--to", str(other)], 4, "not in storage pool"),
        (["move", disk, "--to", str(world.domain("E"))], 4, "not active"),
        (["move", disk, "--to", str(full)], 9, "bytes free"),
        (["move", disk, "--to", str(world.domain("S"))], 4, "same"),
        (["remove", disk], 8, "not a temporary"),
        (["remove", str(uuid.uuid4())], 3, "no disk has id"),
        (["remove", template], 3, "no disk has id"),
        (["remove", ""], 6, ""),
        (["remove", HOSTILE], 6, ""),
        (["remove", str(tmp)], 5, "LOCKED"),
        (["worker", "not-a-command"], 6, "not a command id"),
        (["inventory", str(tmp_path / "missing.json")], 16, ""),
        (["inventory", str(bad_json)], 16, ""),
        (["inventory", str(bad_ref)], 16, ""),
    ]
    base = {**env}
    before = dump_rows(world)
    files = sorted(str(p.relative_to(world.root)) for p in (world.root / "domains").rglob("*"))
    problems = []
    for argv, code, words in cases:
        got, out, err = run_main(argv, base, monkeypatch)
        TRIED["cli"] += 1
        lines = err.strip().splitlines()
        if got != code or len(lines) != 1 or not lines[0].startswith("movedisk: ") or words not in err:
            problems.append(f"{argv[:3]}: exit {got} (expected {code}), stderr {err.strip()[:300]!r}")
        if dump_rows(world) != before:
            problems.append(f"{argv[:3]}: changed the database")
            before = dump_rows(world)
    # A database that is not there, an agent that is not there.
    for argv, env2, code in (
        (["status"], {"MOVEDISK_DSN": world.dsn.replace("dbname=", "dbname=nope")}, 12),
        (["worker", str(uuid.uuid4())], {}, 0),  # internal: an unknown or ended move, nothing to do
        (["recover"], {"MOVEDISK_AGENT_SOCKET": str(tmp_path / "no.sock")}, None),
        (["cleanup", "--all"], {"MOVEDISK_AGENT_SOCKET": str(tmp_path / "no.sock")}, None),
    ):
        got, out, err = run_main(argv, {**base, **env2}, monkeypatch)
        TRIED["cli"] += 1
        if "Traceback" in err or (code is not None and got != code) or len(err.strip().splitlines()) > 1:
            problems.append(f"{argv} with {env2}: exit {got}, stderr {err.strip()[:300]!r}")
    assert not problems, "\n".join(problems)
    assert dump_rows(world) == before
    assert sorted(str(p.relative_to(world.root)) for p in (world.root / "domains").rglob("*")) == files


def dump_rows(world) -> str:
    return Db(world.dsn).digest()


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    request.config._bad_inputs = dict(TRIED)  # for the report; printed with -s
    print(f"\nbad inputs tried: {dict(TRIED)}")
