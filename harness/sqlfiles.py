"""The package's SQL files: where they are, their order, and how they split into statements."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

UPGRADE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def sql_dir() -> Path:
    """The package's SQL files: ``MOVEDISK_SQL_DIR`` when set (tests, packagers), else the
    ``movedisk/sql`` package data of an installed wheel, else the checkout's ``sql/``."""
    env = os.environ.get("MOVEDISK_SQL_DIR")
    if env:
        return Path(env)
    installed = Path(__file__).resolve().parent / "sql"
    if (installed / "tables").is_dir():
        return installed
    return Path(__file__).resolve().parents[1] / "sql"


@dataclass(frozen=True)
class SqlFile:
    path: Path
    name: str  # relative to sql/, e.g. 'upgrade/0002_images_to_be_deleted.sql'
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def version(self) -> str:
        m = UPGRADE_NAME.match(self.path.name)
        return m.group(1) if m else ""


@dataclass(frozen=True)
class SqlTree:
    """The three kinds of files, each in the order deploy applies them."""

    root: Path
    tables: list[SqlFile]
    upgrades: list[SqlFile]
    procedures: list[SqlFile]
    privileges: SqlFile | None
    roles: SqlFile | None = None

    @classmethod
    def load(cls, root: Path | None = None) -> SqlTree:
        root = root or sql_dir()

        def read(p: Path) -> SqlFile:
            return SqlFile(p, p.relative_to(root).as_posix(), p.read_text())

        tables = [read(p) for p in sorted((root / "tables").glob("*.sql"))]
        upgrades = [read(p) for p in sorted((root / "upgrade").glob("*.sql"))]
        for f in upgrades:
            if not f.version:
                raise ValueError(f"{f.name}: upgrade scripts are named NNNN_name.sql")
        versions = [f.version for f in upgrades]
        if len(set(versions)) != len(versions):
            raise ValueError("two upgrade scripts share a number: " + ", ".join(versions))
        # Views first (functions may return their row types), then the *_sp.sql families.
        procedures = sorted(
            (read(p) for p in (root / "procedures").glob("*.sql")),
            key=lambda f: (not f.path.name.endswith("views.sql"), f.path.name),
        )
        priv, roles = root / "privileges.sql", root / "roles.sql"
        return cls(
            root,
            tables,
            upgrades,
            procedures,
            read(priv) if priv.exists() else None,
            read(roles) if roles.exists() else None,
        )

    def require_complete(self) -> None:
        """Refuse a tree without table or procedure files (a package installed without its
        SQL, a wrong MOVEDISK_SQL_DIR): deploying it would report success and do nothing."""
        from .errors import DeployError

        empty = [k for k, files in (("tables", self.tables), ("procedures", self.procedures))
                 if not files]
        if empty:
            raise DeployError(
                f"no SQL files in {self.root}/" + " or /".join(empty)
                + ": the package's SQL is missing (reinstall movedisk, or fix MOVEDISK_SQL_DIR)"
            )

    def all_files(self) -> list[SqlFile]:
        extra = [f for f in (self.roles, self.privileges) if f is not None]
        return [*self.tables, *self.upgrades, *self.procedures, *extra]


@dataclass(frozen=True)
class Statement:
    line: int  # 1-based line of the statement's first character in its file
    text: str

    def file_line(self, offset: int) -> int:
        """The file line of 0-based character ``offset`` inside this statement."""
        return self.line + self.text.count("\n", 0, max(offset, 0))

    def body_line(self, body_line: int) -> int:
        """The file line of line ``body_line`` of the statement's first dollar-quoted body."""
        m = _DOLLAR.search(self.text)
        start = self.file_line(m.end()) if m else self.line
        return start + body_line - 1


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str) -> list[Statement]:
    """Split SQL text at top-level semicolons.

    Understands -- and nested /* */ comments, '' strings (E'' with backslash
    escapes), "" identifiers and $tag$ dollar quotes. Statements that hold only
    comments are dropped; each statement starts at its first significant character.
    (Remembered per text: a deploy splits each of its ~50 files up to three times.)
    """
    return list(_split(text))


# Where the plain text of a statement may end: a character that starts a comment, a string,
# an identifier, a dollar quote, a new line or the end of the statement.
_PLAIN = re.compile(r"[^\n;'\"$/-]+")


@functools.lru_cache(maxsize=256)
def _split(text: str) -> tuple[Statement, ...]:
    out: list[Statement] = []
    i, n = 0, len(text)
    start: int | None = None
    line = 1
    start_line = 1

    def begin() -> None:
        nonlocal start, start_line
        if start is None:
            start, start_line = i, line

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            line += text.count("\n", i, j)
            i = j
        elif c == ";":
            if start is not None:
                out.append(Statement(start_line, text[start:i].rstrip()))
                start = None
            i += 1
        elif c in "'\"":
            begin()
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and (
                i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_")
            )
            j = i + 1
            while j < n:
                if escapes and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            line += text.count("\n", i, j)
            i = j + 1
        elif c == "$" and (m := _DOLLAR.match(text, i)) and not (
            i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            begin()
            close = text.find(m.group(0), m.end())
            j = n if close < 0 else close + len(m.group(0))
            line += text.count("\n", i, j)
            i = j
        else:
            begin()
            m = _PLAIN.match(text, i + 1)  # the rest of a run of plain text at once
            i = m.end() if m else i + 1
    if start is not None and text[start:].strip():
        out.append(Statement(start_line, text[start:].rstrip()))
    return tuple(out)
