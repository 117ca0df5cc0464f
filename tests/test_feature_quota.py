"""Quota and storage usage through a move, in bytes: a leftover once on its source domain,
a disk in flight on both domains, never a byte twice on one domain."""

from __future__ import annotations

from feature_rows import GB, make_quota, move_phase1, move_phase3, setup

SIZE = 10 * GB
ACTUAL = [1 * GB, 2 * GB, 3 * GB]
# oVirt's rule: the active (top) volume counts its virtual size, the others their actual size.
DISK_BYTES = ACTUAL[0] + ACTUAL[1] + SIZE


def usage(db, domain):
    return db.execute(
        "SELECT used_bytes, disk_bytes, leftover_bytes, in_flight_bytes "
        "FROM storage_domain_usage_view WHERE storage_domain_id = %s", (domain,)
    ).fetchone()


def quota_usage(db, quota, domain):
    return db.execute(
        "SELECT used_bytes, leftover_bytes, in_flight_bytes FROM quota_storage_usage_view "
        "WHERE quota_id = %s AND storage_id = %s", (quota, domain)
    ).fetchone()


def total(db, quota):
    return db.execute("SELECT * FROM quota_usage_view WHERE quota_id = %s", (quota,)).fetchone()


def test_before_the_move_the_disk_counts_on_its_domain(db) -> None:
    s = setup(db, volumes=3, size=SIZE, actual_sizes=ACTUAL)
    assert usage(db, s.src) == {"used_bytes": DISK_BYTES, "disk_bytes": DISK_BYTES,
                                "leftover_bytes": 0, "in_flight_bytes": 0}
    assert usage(db, s.dest)["used_bytes"] == 0
    assert quota_usage(db, s.quota, s.src)["used_bytes"] == DISK_BYTES
    assert total(db, s.quota)["used_bytes"] == DISK_BYTES


def test_in_flight_the_disk_counts_on_both_domains_and_its_shadow_nowhere(db) -> None:
    s = setup(db, volumes=3, size=SIZE, actual_sizes=ACTUAL)
    move_phase1(db, s)
    # The LOCKED temporary disk on S shadows the live original: S is not charged twice.
    assert usage(db, s.src) == {"used_bytes": DISK_BYTES, "disk_bytes": DISK_BYTES,
                                "leftover_bytes": 0, "in_flight_bytes": 0}
    assert usage(db, s.dest) == {"used_bytes": DISK_BYTES, "disk_bytes": 0,
                                 "leftover_bytes": 0, "in_flight_bytes": DISK_BYTES}
    assert quota_usage(db, s.quota, s.src)["used_bytes"] == DISK_BYTES
    assert quota_usage(db, s.quota, s.dest) == {"used_bytes": DISK_BYTES, "leftover_bytes": 0,
                                                "in_flight_bytes": DISK_BYTES}
    assert total(db, s.quota)["used_bytes"] == 2 * DISK_BYTES


def test_after_phase3_the_disk_counts_on_the_destination_and_the_leftover_once_on_the_source(db) -> None:
    s = setup(db, volumes=3, size=SIZE, actual_sizes=ACTUAL)
    tmp, _ = move_phase1(db, s)
    move_phase3(db, s)
    assert usage(db, s.dest) == {"used_bytes": DISK_BYTES, "disk_bytes": DISK_BYTES,
                                 "leftover_bytes": 0, "in_flight_bytes": 0}
    assert usage(db, s.src) == {"used_bytes": DISK_BYTES, "disk_bytes": 0,
                                "leftover_bytes": DISK_BYTES, "in_flight_bytes": 0}
    # Deletion on S failed: the ILLEGAL leftover still counts, once, on S.
    db.execute("SELECT MarkTemporaryDiskIllegal(%s)", (tmp,))
    assert usage(db, s.src)["leftover_bytes"] == DISK_BYTES
    assert quota_usage(db, s.quota, s.src)["leftover_bytes"] == DISK_BYTES
    # Deleted on S: nothing left there.
    db.execute("SELECT RemoveTemporaryDisk(%s, TRUE)", (tmp,))
    assert usage(db, s.src)["used_bytes"] == 0 and usage(db, s.dest)["used_bytes"] == DISK_BYTES
    assert total(db, s.quota)["used_bytes"] == DISK_BYTES


def test_a_failed_move_counts_the_disk_on_the_source_only(db) -> None:
    s = setup(db, volumes=3, size=SIZE, actual_sizes=ACTUAL)
    tmp, _ = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))  # end with failure
    assert usage(db, s.src)["used_bytes"] == DISK_BYTES
    assert usage(db, s.dest)["used_bytes"] == 0


def test_usage_goes_to_each_disk_own_quota(db) -> None:
    s = setup(db, volumes=1, size=SIZE, actual_sizes=[GB])
    other = make_quota(db, s.pool)
    from feature_rows import make_disk

    make_disk(db, s.src, volumes=1, size=4 * GB, actual_sizes=[GB], quota=other)
    assert quota_usage(db, s.quota, s.src)["used_bytes"] == SIZE
    assert quota_usage(db, other, s.src)["used_bytes"] == 4 * GB
    assert usage(db, s.src)["used_bytes"] == SIZE + 4 * GB
