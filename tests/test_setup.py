"""scripts/setup-system: what `make test` installs before anything else."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup-system"


def test_everything_is_there_so_it_does_nothing() -> None:
    res = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_without_root_a_missing_tool_is_one_line_saying_what_to_install() -> None:
    # A PATH with the shell's tools but without qemu-img / qemu-io, run as an unprivileged user.
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="movedisk-setup-"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ls", "sort", "tail", "python3", "id", "sed", "setpriv", "apt-get"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    # The script runs from a copy the unprivileged user can read (a checkout may sit in a
    # directory only its owner may enter, as mktemp -d makes them).
    script = tmp_path / "setup-system"
    shutil.copy2(SCRIPT, script)
    os.chmod(script, 0o755)
    os.chmod(tmp_path, 0o755)
    res = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
         "/bin/sh", str(script)],
        capture_output=True, text=True, timeout=60, env={"PATH": str(bindir)},
    )
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install" in lines[0], res.stderr
    assert "qemu-utils" in lines[0] and "postgresql-" not in lines[0], lines[0]
