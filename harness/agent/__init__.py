"""The storage agent: a VDSM-style client and the simulator behind it.

- :mod:`.client`: ``StorageClient`` (VDSM's verbs) and ``SimControl`` (provisioning, faults);
- :mod:`.server`: the simulator process (JSON-RPC 2.0 over a Unix socket);
- :mod:`.layout`: the on-disk layout of domains, image groups, volumes and tasks;
- :mod:`.datacopy`: sparse kernel copies and checksums;
- :mod:`.tasks`: asynchronous tasks recorded on disk;
- :mod:`.errors`: typed errors with VDSM's codes;
- :mod:`.cli`: ``movedisk agent serve|ls|tasks|ping``.
"""

from .client import COPY, MOVE, SimControl, StorageClient, wait_for_agent
from .errors import AgentError

__all__ = ["COPY", "MOVE", "AgentError", "SimControl", "StorageClient", "wait_for_agent"]
