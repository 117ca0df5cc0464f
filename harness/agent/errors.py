"""Typed errors of the storage agent, numbered like VDSM's (vdsm/storage/exception.py).

Every error the agent reports has a VDSM code (``vdsm_code``) and travels over
JSON-RPC as ``{"code": vdsm_code, "message": ..., "data": {"type": ClassName,
"details": {...}}}``; the client raises the same class again. Errors that the
rest of movedisk already has a name for also derive from that type
(:class:`harness.errors.DeletionBlocked`, ``InsufficientSpace``,
``MalformedId``, ``WrongStorageDomain``) so that a caller may catch either.
"""

from __future__ import annotations

from typing import Any

from ..errors import DeletionBlocked, InsufficientSpace, MalformedId, MovediskError, WrongStorageDomain


class AgentError(MovediskError):
    """Base of every error the storage agent reports."""

    code = "MD200"
    exit_code = 13
    vdsm_code = 100  # VDSM's GeneralException

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["vdsm_code"] = self.vdsm_code
        return out


class AgentUnavailable(AgentError):
    """The agent's socket does not answer (not started, dead, or wrong path)."""

    code = "MD201"
    exit_code = 14
    vdsm_code = 100


class ProtocolError(AgentError):
    """A malformed JSON-RPC request or answer, or an unknown method."""

    code = "MD202"
    vdsm_code = 100


class AgentAlreadyRunning(AgentError):
    """Another agent already serves this root directory."""

    code = "MD203"
    vdsm_code = 100


class QemuToolMissing(AgentError):
    """qemu-img or qemu-io is not installed where the agent runs."""

    code = "MD204"
    exit_code = 18
    vdsm_code = 100


class QemuImgError(AgentError):
    """qemu-img or qemu-io failed (the message carries its last error line)."""

    code = "MD205"
    vdsm_code = 100


class InvalidParameter(AgentError):
    vdsm_code = 1000


class InvalidUUID(MalformedId, InvalidParameter):
    """An id that is not a UUID."""

    vdsm_code = 1000


class VolumeDoesNotExist(AgentError):
    vdsm_code = 201


class VolumeAlreadyExists(AgentError):
    vdsm_code = 212


class CannotDeleteSharedVolume(DeletionBlocked, AgentError):
    """Other image groups on the domain still depend on a volume of this one."""

    vdsm_code = 223


class MoveImageError(AgentError):
    vdsm_code = 253


class ImagePathError(AgentError):
    vdsm_code = 254


class ImageDeleteError(AgentError):
    vdsm_code = 256


class SourceImageActionError(AgentError):
    """VDSM's "Error during source image manipulation": the status code of a Move (op 2)
    whose copy is complete and durable but whose source image group was not deleted
    (refused, failed, or interrupted by the agent's death). Distinct from every failed-copy
    code, so that no caller takes the destination for a partial copy and deletes it."""

    vdsm_code = 259


class DestImageActionError(AgentError):
    vdsm_code = 260


class CopyImageError(AgentError):
    vdsm_code = 261


class ImageIsNotLegalChain(AgentError):
    vdsm_code = 262


class CouldNotValideTemplateOnTargetDomain(AgentError):
    """The image group is based on a template that the destination does not hold."""

    vdsm_code = 263


class ImageDoesNotExistInSD(AgentError):
    vdsm_code = 268


class StorageDomainNotInPool(WrongStorageDomain, AgentError):
    vdsm_code = 353


class StorageDomainDoesNotExist(WrongStorageDomain, AgentError):
    vdsm_code = 358


class StorageDomainAlreadyExists(AgentError):
    vdsm_code = 365


class NoSpaceLeftOnDomain(InsufficientSpace, AgentError):
    vdsm_code = 397


class UnknownTask(AgentError):
    vdsm_code = 401


class TaskNotFinished(AgentError):
    vdsm_code = 403


class TaskStateError(AgentError):
    vdsm_code = 410


class TaskAborted(AgentError):
    """The task was stopped, or the agent died while it ran."""

    vdsm_code = 411


class ImageVerificationError(AgentError):
    """The copy's checksum differs from the source volume's."""

    vdsm_code = 484


class ImageLocked(AgentError):
    """Another task of this agent works on the image group (VDSM would time out on its lock)."""

    vdsm_code = 851  # ResourceTimeout


ALL: dict[str, type[AgentError]] = {
    cls.__name__: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, AgentError)
}
BY_VDSM_CODE: dict[int, type[AgentError]] = {}
for _cls in ALL.values():
    BY_VDSM_CODE.setdefault(_cls.vdsm_code, _cls)


def to_wire(exc: AgentError) -> dict[str, Any]:
    """The JSON-RPC error object of ``exc``."""
    return {
        "code": exc.vdsm_code,
        "message": exc.message,
        "data": {"type": type(exc).__name__, "details": exc.details},
    }


def from_wire(err: dict[str, Any]) -> AgentError:
    """The exception a JSON-RPC error object stands for."""
    data = err.get("data") or {}
    cls = ALL.get(str(data.get("type"))) or BY_VDSM_CODE.get(err.get("code", 0), AgentError)
    details = data.get("details") or {}
    return cls(str(err.get("message", "agent error")), **details)
