"""At 1,000,000 images and 10,000 images_to_be_deleted rows, the lookups and the storage-match
procedure use indexes. plpgsql hides plans, so the queries the functions run are EXPLAINed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lookups_at_scale", ROOT / "bench" / "lookups_at_scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)  # type: ignore[union-attr]

TEMP = scale.I((1 + scale.N_DISKS) * 2 + 1)  # a temporary image (leftover of disk 1)
SRC = scale.I(1 * 2 + 1)
DISK = scale.D(1234)
SD = "00000003-0000-4000-8000-000000000003"

QUERIES = {
    "GetImageByImageGuid": ("SELECT * FROM images_storage_domain_view WHERE image_guid = %s", (SRC,)),
    "GetImageByImageGuid(temporary)": (
        "SELECT * FROM images_storage_domain_view WHERE image_guid = %s", (TEMP,)),
    "GetSnapshotsByImageGroupId": (
        "SELECT * FROM images_storage_domain_view WHERE image_group_id = %s", (DISK,)),
    "GetVmImageByImageGuid": ("SELECT * FROM vm_images_view WHERE image_guid = %s", (SRC,)),
    "GetSnapshotByLeafGuid": (
        "SELECT * FROM images_storage_domain_view WHERE image_guid = ANY(%s::uuid[])",
        ([SRC, scale.I(1 * 2)],)),
    "GetSnapshotByLeafGuid(chain walk)": (
        "WITH RECURSIVE chain (image_guid, parentid, image_group_id, depth) AS (SELECT "
        "images.image_guid, images.parentid, images.image_group_id, 0 FROM images "
        "WHERE images.image_guid = %s UNION ALL SELECT images.image_guid, images.parentid, "
        "images.image_group_id, chain.depth + 1 FROM images INNER JOIN chain "
        "ON images.image_guid = chain.parentid AND images.image_group_id = chain.image_group_id) "
        "SELECT array_agg(chain.image_guid ORDER BY chain.depth) FROM chain", (SRC,)),
    "GetSourceImageOnSourceStorage": (
        "SELECT src.image_guid, src.image_group_id, m.storage_domain_id, p.storage_pool_id "
        "FROM images_to_be_deleted AS t INNER JOIN images AS src ON src.image_guid = t.src_image_id "
        "AND src.image_group_id = t.src_image_group_id INNER JOIN image_storage_domain_map AS m "
        "ON m.image_id = t.src_image_id AND m.storage_domain_id = t.src_storage "
        "LEFT JOIN storage_pool_iso_map AS p ON p.storage_id = t.src_storage WHERE t.image_id = %s",
        (TEMP,)),
    "GetImageToBeDeletedByImageId": ("SELECT * FROM images_to_be_deleted WHERE image_id = %s", (TEMP,)),
    "GetImagesToBeDeletedBySrcImageGroupId": (
        "SELECT * FROM images_to_be_deleted WHERE src_image_group_id = %s", (scale.D(1),)),
    "GetImagesToBeDeletedBySrcImageId": (
        "SELECT * FROM images_to_be_deleted WHERE src_image_id = %s", (SRC,)),
    "GetImagesToBeDeletedBySrcStorage": (
        "SELECT * FROM images_to_be_deleted WHERE src_storage = %s", (SD,)),
}


@pytest.fixture(scope="module")
def big(databases, template_db):
    """One database with 1,000,000 images, shared by the tests of this module."""
    dsn = databases.create("movedisk_scale", template_db)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        scale.populate(conn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    yield dsn
    databases.drop("movedisk_scale")


def test_the_database_has_the_promised_size(big) -> None:
    with psycopg.connect(big) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] >= 1_000_000
        assert conn.execute("SELECT count(*) FROM images_to_be_deleted").fetchone()[0] == 10_000


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_lookup_uses_indexes(big, name) -> None:
    query, params = QUERIES[name]
    with psycopg.connect(big) as conn:
        conn.execute("SET jit = off")
        rows = conn.execute(query, params).fetchall()
        # After phase 3 the source left S: the storage match rightly finds no row.
        assert rows or name == "GetSourceImageOnSourceStorage", name
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))
    for table in ("images", "images_to_be_deleted", "image_storage_domain_map",
                  "disk_image_dynamic", "base_disks"):
        assert f"Seq Scan on {table} " not in plan + " ", f"{name}: {table}\n{plan}"
    assert "Index" in plan


def test_storage_match_answers_in_milliseconds(big) -> None:
    import time

    with psycopg.connect(big) as conn:
        conn.execute("SELECT IsSourceImageOnSourceStorage(%s)", (TEMP,))
        t0 = time.perf_counter()
        for _ in range(100):
            assert conn.execute("SELECT IsSourceImageOnSourceStorage(%s)", (TEMP,)).fetchone()[0] is False
        assert (time.perf_counter() - t0) / 100 < 0.005
