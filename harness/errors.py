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
    """The database could not be reached (no server there, no such database, connection lost)."""

    code = "MD103"
    exit_code = 12


class InvalidDsn(MovediskError):
    """The connection string is not one libpq can read."""

    code = "MD104"
    exit_code = 22


class AuthenticationFailed(MovediskError):
    """The server refused the role: wrong password, no such role, no pg_hba.conf entry."""

    code = "MD105"
    exit_code = 23


class NotPrimary(MovediskError):
    """The server is not (or no longer) the primary: a standby, read-only, or an old primary
    that a failover superseded. Nothing was changed; such a server is never retried."""

    code = "MD120"
    exit_code = 20


class PermissionDenied(MovediskError):
    """The connected role lacks a privilege the command needs."""

    code = "MD107"
    exit_code = 24


class LockTimeout(MovediskError):
    """A lock could not be had within the lock timeout (another session holds it)."""

    code = "MD108"
    exit_code = 25


class StatementTimeout(MovediskError):
    """A statement was cancelled: statement_timeout, or an operator's pg_cancel_backend."""

    code = "MD109"
    exit_code = 26


class DatabaseError(MovediskError):
    """Any other error the server reported; the message carries its SQLSTATE."""

    code = "MD110"
    exit_code = 19


class NoTarget(MovediskError):
    """No database was named (--dsn, MOVEDISK_DSN, PG*) and --embedded was not given."""

    code = "MD111"
    exit_code = 21


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

# SQLSTATEs (or their two-character classes) that a user causes with the server's state.
_SERVER_STATES: dict[str, type[MovediskError]] = {
    "25006": NotPrimary,  # read_only_sql_transaction
    "42501": PermissionDenied,  # insufficient_privilege
    "55P03": LockTimeout,  # lock_not_available
    "57014": StatementTimeout,  # query_canceled
    "28": AuthenticationFailed,  # invalid_authorization_specification
    "08": ConnectionFailed,  # connection_exception
    "57P01": ConnectionFailed,  # admin_shutdown
    "57P02": ConnectionFailed,  # crash_shutdown
    "57P03": ConnectionFailed,  # cannot_connect_now
    "3D000": ConnectionFailed,  # invalid_catalog_name (no such database)
}

# libpq reports connection failures as text only (no SQLSTATE reaches the client).
_CONNECT_MESSAGES: tuple[tuple[str, type[MovediskError]], ...] = (
    ("password authentication failed", AuthenticationFailed),
    ("no password supplied", AuthenticationFailed),
    ("no pg_hba.conf entry", AuthenticationFailed),
    ("authentication failed", AuthenticationFailed),
    ("role \"", AuthenticationFailed),
    ("is not in hot standby mode", ConnectionFailed),
    ("read-only", NotPrimary),
    ("hot standby", NotPrimary),
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def from_db_error(exc: Exception) -> MovediskError | None:
    """The user error a psycopg error stands for, or None if it is not one of the package's."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc)
    if sqlstate in USER_ERRORS:
        detail = getattr(diag, "message_detail", None)
        return USER_ERRORS[sqlstate](message, **({"detail": detail} if detail else {}))
    if sqlstate == "22P02":  # invalid_text_representation: a malformed uuid
        return MalformedId(message)
    return None


def from_connect_error(exc: Exception, target: str) -> MovediskError:
    """The error of a failed connection attempt, naming ``target``."""
    import psycopg

    text = _one_line(str(exc))
    if isinstance(exc, psycopg.ProgrammingError):
        return InvalidDsn(f"cannot read the connection string: {text}")
    lowered = text.lower()
    for needle, cls in _CONNECT_MESSAGES:
        if needle in lowered:
            return cls(f"{target}: {text}")
    return ConnectionFailed(f"cannot connect to {target}: {text}")


def from_any_db_error(exc: Exception) -> MovediskError:
    """Every psycopg error as a movedisk error with one line and its own exit code."""
    mapped = from_db_error(exc)
    if mapped is not None:
        return mapped
    sqlstate = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    message = _one_line(getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__)
    cls = _SERVER_STATES.get(sqlstate) or _SERVER_STATES.get(sqlstate[:2])
    if cls is None:
        import psycopg

        if isinstance(exc, psycopg.OperationalError) and not sqlstate:
            cls = ConnectionFailed
        else:
            cls = DatabaseError
    suffix = f" (SQLSTATE {sqlstate})" if sqlstate and cls is DatabaseError else ""
    return cls(message + suffix, **({"sqlstate": sqlstate} if sqlstate else {}))


def server_state_error(exc: Exception, where: str) -> MovediskError | None:
    """The error of a statement that failed on the server's state rather than on its own
    text (read-only, privilege, timeouts), prefixed with ``where``; None for other errors."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    cls = _SERVER_STATES.get(sqlstate) or _SERVER_STATES.get(sqlstate[:2])
    if cls is None:
        return None
    diag = getattr(exc, "diag", None)
    message = _one_line(getattr(diag, "message_primary", None) or str(exc))
    return cls(f"{where}: {message}", sqlstate=sqlstate)
