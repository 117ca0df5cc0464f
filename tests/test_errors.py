"""User errors raised by the stored functions arrive through the harness as one exception
type each (harness/errors.py), and a refused call changes nothing."""

from __future__ import annotations

import uuid

import pytest

from feature_rows import setup, snapshot
from movedisk.db import call
from movedisk.errors import (
    DiskBusy,
    MalformedId,
    MovediskError,
    NotTemporaryImage,
    UnknownDisk,
    WrongStorageDomain,
)


def test_each_user_error_has_its_type_and_changes_nothing(db) -> None:
    s = setup(db)
    before = snapshot(db)
    cases = [
        (UnknownDisk, "CreateTemporaryDiskForMove", (uuid.uuid4(), s.src, s.dest)),
        (WrongStorageDomain, "CreateTemporaryDiskForMove", (s.disk.disk_id, s.src, s.src)),
        (MalformedId, "CreateTemporaryDiskForMove", ("not-a-uuid", s.src, s.dest)),
        (NotTemporaryImage, "GetImageToBeDeletedRemovalPlan", (s.disk.images[0],)),
        (UnknownDisk, "GetImageToBeDeletedRemovalPlan", (uuid.uuid4(),)),
    ]
    for expected, function, args in cases:
        with pytest.raises(expected) as err, db.transaction():
            call(db, function, *args)
        assert err.value.code == expected.code and err.value.message, function
        assert snapshot(db) == before, function
    call(db, "CreateTemporaryDiskForMove", s.disk.disk_id, s.src, s.dest)
    moving = snapshot(db)
    with pytest.raises(DiskBusy), db.transaction():
        call(db, "CreateTemporaryDiskForMove", s.disk.disk_id, s.src, s.dest)
    assert snapshot(db) == moving


def test_function_names_are_identifiers_only(db) -> None:
    with pytest.raises(MovediskError, match="not a function name"):
        call(db, "GetAllFromDisks(); DROP TABLE images; --")


def test_every_error_type_has_its_own_exit_code() -> None:
    """A script tells errors apart by exit code: no two error types share one, except a
    subclass that keeps its parent's (it is a kind of that error)."""
    import importlib
    import pkgutil

    import movedisk
    from movedisk.errors import MovediskError

    for mod in pkgutil.walk_packages(movedisk.__path__, "movedisk."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    # shared on purpose: to a script each pair means one thing ("another process holds this
    # disk"; "the engine stopped, the storage decides: run verify")
    shared = {frozenset({"DiskBusy", "LeaseLost"}), frozenset({"MoveStuck", "MoveRecordLost"})}
    seen: dict[int, type] = {}
    stack = [MovediskError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        code = cls.__dict__.get("exit_code")
        if code is None:
            continue
        other = seen.setdefault(code, cls)
        assert other is cls or issubclass(cls, other) or issubclass(other, cls) or \
            frozenset({cls.__name__, other.__name__}) in shared, (
            f"exit code {code}: {other.__module__}.{other.__name__} and "
            f"{cls.__module__}.{cls.__name__}")
