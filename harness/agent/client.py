"""Clients of the storage agent: :class:`StorageClient` (VDSM's verbs, what the engine
uses) and :class:`SimControl` (the simulator's provisioning and fault verbs, for
tests and demos only). Both speak JSON-RPC 2.0 over the agent's Unix socket, one
connection per call, so that a client survives an agent restart between calls.

Errors come back as the typed exceptions of :mod:`movedisk.agent.errors`.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .errors import AgentUnavailable, ProtocolError, TaskAborted, from_wire
from .layout import BLANK_UUID, Root

COPY = 1  # VDSM's op for Image.move: copy, leave the source as it is
MOVE = 2  # copy, then delete the source

_ids = itertools.count(1)


def default_socket(root: str | os.PathLike[str]) -> str:
    return str(Root(root).socket)


class _Rpc:
    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 60.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    @classmethod
    def for_root(cls, root: str | os.PathLike[str], **kw: Any) -> Any:
        return cls(default_socket(root), **kw)

    def call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC request; the result, or the typed error the agent answered."""
        rid = next(_ids)
        request = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                raise AgentUnavailable(
                    f"the storage agent does not answer on {self.socket_path}: {exc.strerror}",
                    socket=self.socket_path,
                ) from None
            try:
                sock.sendall(request.encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    data += chunk
            except OSError as exc:
                raise AgentUnavailable(
                    f"the storage agent on {self.socket_path} failed during {method}: {exc}",
                    socket=self.socket_path, method=method,
                ) from None
        finally:
            sock.close()
        if not data:
            raise AgentUnavailable(
                f"the storage agent on {self.socket_path} closed the connection during {method}",
                socket=self.socket_path, method=method,
            )
        try:
            reply = json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"unreadable answer to {method}: {exc}") from None
        if "error" in reply:
            raise from_wire(reply["error"])
        return reply.get("result")


class StorageClient(_Rpc):
    """VDSM's storage verbs (HSM parameter names). Tasks are asynchronous: a verb that
    changes storage returns a task id at once; ``tag`` (e.g. the engine's command id)
    is kept with the task so that it can be found again after a crash."""

    def ping(self) -> dict[str, Any]:
        return self.call("Host.ping")  # type: ignore[no-any-return]

    def move_image(self, spUUID: str, srcDomUUID: str, dstDomUUID: str, imgUUID: str, op: int,
                   postZero: bool = False, force: bool = False, tag: str | None = None) -> str:
        """Image.move: op=COPY (1) copies every volume, op=MOVE (2) then deletes the source
        (the task result's ``source_deleted`` says whether that worked). Returns the task id."""
        return self.call("Image.move", spUUID=spUUID, srcDomUUID=srcDomUUID,  # type: ignore[no-any-return]
                         dstDomUUID=dstDomUUID, imgUUID=imgUUID, op=op, postZero=postZero,
                         force=force, tag=tag)

    def delete_image(self, spUUID: str, sdUUID: str, imgUUID: str, postZero: bool = False,
                     force: bool = False, tag: str | None = None) -> str:
        """Image.delete: remove the image group (zeroing its data first with postZero).
        Refused at once (CannotDeleteSharedVolume) while other image groups depend on it."""
        return self.call("Image.delete", spUUID=spUUID, sdUUID=sdUUID,  # type: ignore[no-any-return]
                         imgUUID=imgUUID, postZero=postZero, force=force, tag=tag)

    def get_volumes(self, spUUID: str, sdUUID: str, imgUUID: str) -> list[str]:
        """Image.getVolumes: the image group's volume ids, base first (template included)."""
        return self.call("Image.getVolumes", spUUID=spUUID, sdUUID=sdUUID,  # type: ignore[no-any-return]
                         imgUUID=imgUUID)

    def verify_image(self, spUUID: str, sdUUID: str, imgUUID: str,
                     expected: dict[str, str] | None = None) -> dict[str, Any]:
        """Image.verify: re-read the image group's own volumes on the domain (qemu-img check,
        layer checksums recomputed from the data) and compare them with ``expected``
        ({volUUID: checksum}) or their recorded checksums; ImageVerificationError (484) on a
        difference, else {"verified": [volUUID...], "seconds": s}."""
        return self.call("Image.verify", spUUID=spUUID, sdUUID=sdUUID,  # type: ignore[no-any-return]
                         imgUUID=imgUUID, expected=expected)

    def get_volume_info(self, spUUID: str, sdUUID: str, imgUUID: str, volUUID: str) -> dict[str, Any]:
        """Volume.getInfo: parent, format, capacity, apparentsize, truesize, checksum, legality..."""
        return self.call("Volume.getInfo", spUUID=spUUID, sdUUID=sdUUID,  # type: ignore[no-any-return]
                         imgUUID=imgUUID, volUUID=volUUID)

    def volumes_info(self, spUUID: str, sdUUID: str, imgUUID: str) -> list[dict[str, Any]]:
        """Every volume of the image group with its info, base first."""
        return [self.get_volume_info(spUUID, sdUUID, imgUUID, v)
                for v in self.get_volumes(spUUID, sdUUID, imgUUID)]

    def get_images(self, spUUID: str, sdUUID: str) -> list[str]:
        """StorageDomain.getImages: the image group ids on the domain."""
        return self.call("StorageDomain.getImages", spUUID=spUUID, sdUUID=sdUUID)  # type: ignore[no-any-return]

    def get_domain_info(self, spUUID: str, sdUUID: str) -> dict[str, Any]:
        """StorageDomain.getInfo: capacity, used, free bytes."""
        return self.call("StorageDomain.getInfo", spUUID=spUUID, sdUUID=sdUUID)  # type: ignore[no-any-return]

    def get_task_status(self, taskID: str) -> dict[str, Any]:
        """Task.getStatus: taskState, taskResult, code, message, tag, progress, result."""
        return self.call("Task.getStatus", taskID=taskID)  # type: ignore[no-any-return]

    def stop_task(self, taskID: str) -> bool:
        return bool(self.call("Task.stop", taskID=taskID))

    def clear_task(self, taskID: str) -> bool:
        return bool(self.call("Task.clear", taskID=taskID))

    def get_all_tasks_statuses(self, tags: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Host.getAllTasksStatuses: every task the agent knows (or those carrying one of
        ``tags``), by id."""
        if tags is None:
            return self.call("Host.getAllTasksStatuses")  # type: ignore[no-any-return]
        return self.call("Host.getAllTasksStatuses", tags=tags)  # type: ignore[no-any-return]

    def tasks_by_tag(self, tag: str) -> list[dict[str, Any]]:
        """The statuses of the tasks carrying ``tag``, oldest first."""
        found = self.call("Host.getAllTasksStatuses", tag=tag)
        return sorted(found.values(), key=lambda s: s["created"])

    def wait_task(self, taskID: str, timeout: float = 60.0, interval: float = 0.02) -> dict[str, Any]:
        """Poll until the task is finished; its last status (success or not)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.get_task_status(taskID)
            if st["taskState"] == "finished":
                return st
            if time.monotonic() > deadline:
                raise TaskAborted(f"task {taskID} still {st['taskState']} after {timeout} s",
                                  taskID=taskID, status=st)
            time.sleep(interval)


class SimControl(_Rpc):
    """The simulator's own verbs: provisioning and fault injection (never the engine's)."""

    def create_domain(self, sdUUID: str, spUUID: str, capacity: int, description: str = "") -> dict[str, Any]:
        return self.call("Sim.createDomain", sdUUID=sdUUID, spUUID=spUUID,  # type: ignore[no-any-return]
                         capacity=capacity, description=description)

    def create_volume(self, sdUUID: str, imgUUID: str, volUUID: str, size: int,
                      parent: str = BLANK_UUID, extents: list[tuple[int, int]] | None = None,
                      seed: int = 0, content: bytes | None = None,
                      format: str = "cow") -> dict[str, Any]:
        """A volume of ``size`` bytes, a qcow2 image (``format="cow"``, its parent as backing
        file) or a raw base (``format="raw"``): ``content`` at offset 0 and/or pseudo-random
        data in ``extents`` [(offset, length)], written through qemu-io. A parent in another
        image group (a template volume) is linked into this image group."""
        return self.call("Sim.createVolume", sdUUID=sdUUID, imgUUID=imgUUID,  # type: ignore[no-any-return]
                         volUUID=volUUID, size=size, parent=parent,
                         extents=[list(e) for e in extents or []], seed=seed,
                         content_b64=base64.b64encode(content).decode() if content is not None else None,
                         format=format)

    def create_image(self, sdUUID: str, imgUUID: str, volumes: list[dict[str, Any]],
                     parent: str = BLANK_UUID) -> list[dict[str, Any]]:
        """A chain (base first); each item {volUUID, size, extents?, seed?, content?, format?}
        (format cow, the default, or raw for the base)."""
        items = []
        for v in volumes:
            item = dict(v)
            if "content" in item:
                item["content_b64"] = base64.b64encode(item.pop("content")).decode()
            if "extents" in item:
                item["extents"] = [list(e) for e in item["extents"]]
            items.append(item)
        return self.call("Sim.createImage", sdUUID=sdUUID, imgUUID=imgUUID,  # type: ignore[no-any-return]
                         volumes=items, parent=parent)

    def create_disk_from_template(self, sdUUID: str, imgUUID: str, volUUID: str,
                                  templateVolUUID: str, size: int | None = None,
                                  extents: list[tuple[int, int]] | None = None,
                                  seed: int = 0) -> list[dict[str, Any]]:
        return self.call("Sim.createDiskFromTemplate", sdUUID=sdUUID, imgUUID=imgUUID,  # type: ignore[no-any-return]
                         volUUID=volUUID, templateVolUUID=templateVolUUID, size=size,
                         extents=[list(e) for e in extents or []], seed=seed)

    def import_images(self, sdUUID: str, directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Adopt a directory of qcow2/raw images (copied) as image groups of the domain, one
        per chain found from the backing files; the image groups made, volumes base first."""
        return self.call("Sim.importImages", sdUUID=sdUUID,  # type: ignore[no-any-return]
                         directory=str(Path(directory).absolute()))

    def set_capacity(self, sdUUID: str, capacity: int) -> dict[str, Any]:
        return self.call("Sim.setCapacity", sdUUID=sdUUID, capacity=capacity)  # type: ignore[no-any-return]

    def fill_domain(self, sdUUID: str) -> dict[str, Any]:
        """Make the domain full: its capacity becomes what it uses now."""
        return self.call("Sim.fillDomain", sdUUID=sdUUID)  # type: ignore[no-any-return]

    def add_fault(self, kind: str, sdUUID: str | None = None, imgUUID: str | None = None,
                  count: int = 1, **params: Any) -> int:
        """Inject a fault into the next ``count`` tasks matching domain / image (0: always).
        Kinds: copy_fail_after(bytes), copy_die_after(bytes), copy_corrupt, copy_delay(
        bytes_per_second | sleep_per_chunk, chunk), delete_fail, delete_die,
        delete_delay(seconds), die_at(point); ``Sim.faultKinds`` says what each does."""
        return int(self.call("Sim.addFault", kind=kind, sdUUID=sdUUID, imgUUID=imgUUID,
                             count=count, **params))

    def list_faults(self) -> list[dict[str, Any]]:
        return self.call("Sim.listFaults")  # type: ignore[no-any-return]

    def clear_faults(self) -> int:
        return int(self.call("Sim.clearFaults"))


def wait_for_agent(socket_path: str | Path, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the agent answers Host.ping; its answer."""
    client = StorageClient(socket_path, timeout=2.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.ping()
        except AgentUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
