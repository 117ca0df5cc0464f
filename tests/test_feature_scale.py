"""At 1,000,000 images and 10,000 images_to_be_deleted rows, every lookup by image or image
group id and the storage-match procedure use indexes: the plans of the statements the
functions really run, reported by auto_explain."""

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

# Every lookup by image id or image group id, called as the DAL calls it. plpgsql hides
# its plans from EXPLAIN, so auto_explain reports the plan of every statement the
# function runs (log_nested_statements), sent to this session as notices.
CALLS = {
    "GetImageByImageGuid": ("SELECT * FROM GetImageByImageGuid(%s)", (SRC,)),
    "GetImageByImageGuid(temporary)": ("SELECT * FROM GetImageByImageGuid(%s)", (TEMP,)),
    "GetVmImageByImageGuid": ("SELECT * FROM GetVmImageByImageGuid(%s)", (SRC,)),
    "GetAncestralImageByImageGuid": (
        "SELECT * FROM GetAncestralImageByImageGuid(%s, NULL, FALSE)", (SRC,)),
    "GetSnapshotsByImageGroupId": ("SELECT * FROM GetSnapshotsByImageGroupId(%s)", (DISK,)),
    "GetSnapshotByLeafGuid": ("SELECT * FROM GetSnapshotByLeafGuid(%s)", (SRC,)),
    "GetSnapshotByGuid": ("SELECT * FROM GetSnapshotByGuid(%s)", (SRC,)),
    "GetSnapshotByParentGuid": ("SELECT * FROM GetSnapshotByParentGuid(%s)", (scale.I(2),)),
    "GetDiskByDiskId": ("SELECT * FROM GetDiskByDiskId(%s, NULL, FALSE)", (DISK,)),
    "GetDiskAndSnapshotsByDiskId": (
        "SELECT * FROM GetDiskAndSnapshotsByDiskId(%s, NULL, FALSE)", (DISK,)),
    "GetDiskImageByDiskAndImageIds": (
        "SELECT * FROM GetDiskImageByDiskAndImageIds(%s, %s, NULL, FALSE)", (scale.D(1), SRC)),
    "Getimage_storage_domain_mapByimage_id": (
        "SELECT * FROM Getimage_storage_domain_mapByimage_id(%s)", (SRC,)),
    "images_storage_domain_view by image_guid": (
        "SELECT * FROM images_storage_domain_view WHERE image_guid = %s", (SRC,)),
    "all_disks_including_snapshots by image_guid": (
        "SELECT * FROM all_disks_including_snapshots WHERE image_guid = %s", (SRC,)),
    "GetImageToBeDeletedByImageId": ("SELECT * FROM GetImageToBeDeletedByImageId(%s)", (TEMP,)),
    "GetImagesToBeDeletedBySrcImageGroupId": (
        "SELECT * FROM GetImagesToBeDeletedBySrcImageGroupId(%s)", (scale.D(1),)),
    "GetImagesToBeDeletedBySrcImageId": (
        "SELECT * FROM GetImagesToBeDeletedBySrcImageId(%s)", (SRC,)),
    "GetImagesToBeDeletedBySrcStorage": (
        "SELECT * FROM GetImagesToBeDeletedBySrcStorage(%s)", (SD,)),
    "GetSourceImageOnSourceStorage": ("SELECT * FROM GetSourceImageOnSourceStorage(%s)", (TEMP,)),
    "IsSourceImageOnSourceStorage": ("SELECT IsSourceImageOnSourceStorage(%s)", (TEMP,)),
    "GetImageToBeDeletedRemovalPlan": (
        "SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (TEMP,)),
}
# Not here: Getstorage_domains_List_By_ImageId answers storage_domains rows, whose committed
# size sums every volume of the domain (oVirt's storage_domains view): a per-domain cost.
# Lookups whose answer is legitimately empty on this data set.
MAY_BE_EMPTY = {"GetSourceImageOnSourceStorage", "GetSnapshotByParentGuid"}
BIG_TABLES = ("images", "images_to_be_deleted", "image_storage_domain_map",
              "disk_image_dynamic", "base_disks")  # vm_device is empty here


def plans_of(conn: psycopg.Connection, query: str, params: tuple) -> tuple[list, str]:
    """The rows of ``query`` and the plans of every statement it ran, functions' included."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_level = 'notice'")
    conn.execute("SET jit = off")
    rows = conn.execute(query, params).fetchall()
    conn.execute("SELECT 1")  # the top-level plan is reported when its portal closes
    return rows, "\n".join(notices)


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


@pytest.mark.parametrize("name", sorted(CALLS))
def test_lookup_uses_indexes(big, name) -> None:
    query, params = CALLS[name]
    with psycopg.connect(big) as conn:
        rows, plans = plans_of(conn, query, params)
    assert rows or name in MAY_BE_EMPTY, name
    assert "Query Text" in plans, f"{name}: auto_explain reported nothing"
    for table in BIG_TABLES:
        assert f"Seq Scan on {table} " not in plans, f"{name}: seq scan on {table}\n{plans}"
    assert "Index" in plans, plans


def test_a_seq_scan_would_be_seen(big) -> None:
    """The plan check is not blind: a query that must scan is caught."""
    with psycopg.connect(big) as conn:
        _, plans = plans_of(
            conn, "SELECT count(*) FROM images_storage_domain_view WHERE size = %s", (1,)
        )
    assert "Seq Scan on images " in plans


def test_storage_match_answers_in_milliseconds(big) -> None:
    import time

    with psycopg.connect(big) as conn:
        conn.execute("SELECT IsSourceImageOnSourceStorage(%s)", (TEMP,))
        t0 = time.perf_counter()
        for _ in range(100):
            assert conn.execute("SELECT IsSourceImageOnSourceStorage(%s)", (TEMP,)).fetchone()[0] is False
        assert (time.perf_counter() - t0) / 100 < 0.005
