"""The extended views return the rows release 1's views returned, column for column.

The feature adds columns at the end of images_storage_domain_view, vm_images_view,
all_disks_including_snapshots and all_disks, and the views are written for cheap point
lookups (their joins grouped and ordered differently from release 1's). Whatever their
shape, every row release 1's view gives must come out the same, and no other: release 1's
views are installed next to the current ones (schema prefeature, as bench/lookups_at_scale.py
does) over a database with VMs attached to disks, a disk shared by two VMs, a volume mapped
on two domains, a volume without statistics (disk_image_dynamic), quota, a template, a disk
in a move (phase 1) and a disk moved (phase 3, its leftover on the source domain).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row
from engine_rows import make_disk, make_pool, make_vm
from feature_rows import move_phase1, move_phase3, setup

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lookups_at_scale", ROOT / "bench" / "lookups_at_scale.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # type: ignore[union-attr]

VIEWS = ("images_storage_domain_view", "vm_images_view", "all_disks_including_snapshots", "all_disks")


def columns(db: psycopg.Connection[Any], schema: str, view: str) -> list[str]:
    return [r["attname"] for r in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (f"{schema}.{view}",))]


def rows(db: psycopg.Connection[Any], schema: str, view: str, cols: list[str],
         where: str = "TRUE", params: tuple[Any, ...] = ()) -> Counter[tuple[Any, ...]]:
    # The column names come from the catalog (release 1's view), not from input.
    select = ", ".join(f"v.{c}::TEXT" for c in cols)
    got = db.execute(f"SELECT {select} FROM {schema}.{view} AS v WHERE {where}", params).fetchall()
    return Counter(tuple(r.values()) for r in got)


@pytest.fixture()
def both(new_db: Callable[..., str], tmp_path: Path) -> Iterator[psycopg.Connection[Any]]:
    dsn = new_db()
    with psycopg.connect(dsn, row_factory=dict_row) as db:
        populate(db)
        with psycopg.connect(dsn, autocommit=True) as plain:
            bench.install_prefeature(plain, bench.release_1_sql(tmp_path / "sql"))
        yield db


def populate(db: psycopg.Connection[Any]) -> None:
    pool = make_pool(db, domains=3)
    vm1, vm2 = make_vm(db, pool), make_vm(db, pool)
    make_disk(db, pool, pool.domains[0], vm=vm1, volumes=3)
    shared = make_disk(db, pool, pool.domains[1], vm=vm1, volumes=1)
    db.execute("SELECT InsertVmDevice(%s, %s, 'disk', 'disk', '', '', TRUE, TRUE, FALSE, '', NULL,"
               " NULL, NULL, NULL)", (shared.id, vm2.id))
    copied = make_disk(db, pool, pool.domains[0], volumes=2)
    db.execute("SELECT Insertimage_storage_domain_map(%s, %s, %s, NULL)",
               (copied.images[0], pool.domains[2], pool.quota_id))
    bare = make_disk(db, pool, pool.domains[2], volumes=2)
    db.execute("DELETE FROM disk_image_dynamic WHERE image_id = %s", (bare.images[1],))
    template = make_vm(db, pool, name="tpl")
    db.execute("UPDATE vm_static SET entity_type = 'TEMPLATE' WHERE vm_guid = %s", (template.id,))
    make_disk(db, pool, pool.domains[1], vm=template, volumes=1)
    moving = setup(db)
    move_phase1(db, moving)
    moved = setup(db)
    move_phase1(db, moved)
    move_phase3(db, moved)
    db.commit()


@pytest.mark.parametrize("view", VIEWS)
def test_every_row_of_release_1s_view_is_returned_unchanged(both, view: str) -> None:
    cols = columns(both, "prefeature", view)
    assert columns(both, "public", view)[:len(cols)] == cols
    before = rows(both, "prefeature", view, cols)
    assert sum(before.values()) >= 8
    assert rows(both, "public", view, cols) == before


@pytest.mark.parametrize("view", VIEWS)
def test_point_lookups_by_volume_and_disk_return_release_1s_rows(both, view: str) -> None:
    """As the lookups run them: a generic plan per statement (plpgsql's cached plans)."""
    cols = columns(both, "prefeature", view)
    both.execute("SET plan_cache_mode = force_generic_plan")
    ids = both.execute("SELECT image_guid, image_group_id FROM images").fetchall()
    assert len(ids) >= 15
    for r in ids:
        for key, value in (("image_guid", r["image_guid"]), ("image_group_id", r["image_group_id"])):
            where = f"v.{key} = %s"
            assert rows(both, "public", view, cols, where, (value,)) == rows(
                both, "prefeature", view, cols, where, (value,)), (view, key, value)
    both.execute("RESET plan_cache_mode")
