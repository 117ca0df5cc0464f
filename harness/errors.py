"""Every error a user can cause has one exception type, one exit code and one SQLSTATE.

The stored functions raise the package's own SQLSTATEs (class ``MD``); the
harness turns them into these types with :func:`from_db_error`. A user error
never leaves a change behind: the function that raises it runs in a
transaction that is rolled back.
"""

from __future__ import annotations

from typing import Any


class MovediskError(Exception):
    """Base of every error movedisk reports to its user."""

    code = "MD000"
    exit_code = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "code": self.code,
            "message": self.message,
            **({"details": self.details} if self.details else {}),
        }


# --- user errors (SQLSTATEs raised by sql/procedures) ----------------------------------


class UnknownDisk(MovediskError):
    """No disk, image or temporary image has that id."""

    code = "MD001"
    exit_code = 3


class WrongStorageDomain(MovediskError):
    """The disk is not on that domain, the domain is unknown, inactive or in another pool, or source equals destination."""

    code = "MD002"
    exit_code = 4


class DiskBusy(MovediskError):
    """The disk is locked, already moving, or not in a state that allows the operation."""

    code = "MD003"
    exit_code = 5


class MalformedId(MovediskError):
    """An id is not a UUID."""

    code = "MD004"
    exit_code = 6


class DeletionBlocked(MovediskError):
    """The storage refused to delete an image group (other volumes depend on it)."""

    code = "MD005"
    exit_code = 7


class NotTemporaryImage(MovediskError):
    """The image exists but is not a temporary (To_Be_Deleted) image."""

    code = "MD006"
    exit_code = 8


class InsufficientSpace(MovediskError):
    """The destination domain has no room for the disk."""

    code = "MD007"
    exit_code = 9


# --- operational errors ------------------------------------------------------------------


class DeployError(MovediskError):
    """Deploy failed or refused; nothing was changed."""

    code = "MD100"
    exit_code = 10


class ServerError(MovediskError):
    """The embedded PostgreSQL could not be set up or started."""

    code = "MD101"
    exit_code = 11


class ServerBinariesNotFound(ServerError):
    """No PostgreSQL server binaries were found."""

    code = "MD102"


class ConnectionFailed(MovediskError):
    """The database could not be reached."""

    code = "MD103"
    exit_code = 12


class NotPrimary(MovediskError):
    """The server is not (or no longer) the primary: a standby, read-only, or an old primary
    that a failover superseded. Nothing was changed; such a server is never retried."""

    code = "MD120"
    exit_code = 20


USER_ERRORS: dict[str, type[MovediskError]] = {
    cls.code: cls
    for cls in (
        UnknownDisk,
        WrongStorageDomain,
        DiskBusy,
        MalformedId,
        DeletionBlocked,
        NotTemporaryImage,
        InsufficientSpace,
    )
}


def from_db_error(exc: Exception) -> MovediskError | None:
    """The user error a psycopg error stands for, or None if it is not one."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc)
    if sqlstate in USER_ERRORS:
        detail = getattr(diag, "message_detail", None)
        return USER_ERRORS[sqlstate](message, **({"detail": detail} if detail else {}))
    if sqlstate == "22P02":  # invalid_text_representation: a malformed uuid
        return MalformedId(message)
    return None
