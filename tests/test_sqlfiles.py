"""The statement splitter that lets deploy name the file and line of a failure."""

from __future__ import annotations

import pglast
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movedisk.sqlfiles import SqlTree, split_statements


def test_splits_at_top_level_semicolons_only() -> None:
    text = (
        "-- a comment; with a semicolon\n"
        "SELECT 'a;b', \"x;y\", E'it\\'s;';\n"
        "/* block /* nested; */ still comment; */\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n"
        "    RETURN 1; -- inside the body\n"
        "END;\n"
        "$body$;\n"
        "SELECT $$x;y$$, 'it''s;'\n"
    )
    stmts = split_statements(text)
    assert [s.line for s in stmts] == [2, 4, 9]
    assert stmts[0].text == "SELECT 'a;b', \"x;y\", E'it\\'s;'"
    assert stmts[1].text.startswith("CREATE FUNCTION f()") and stmts[1].text.endswith("$body$")
    assert stmts[2].text == "SELECT $$x;y$$, 'it''s;'"


def test_positions_map_back_to_file_lines() -> None:
    text = "\n\nSELECT 1;\nCREATE FUNCTION g() RETURNS int\nLANGUAGE plpgsql AS $$\nBEGIN\n  bad;\nEND;\n$$;"
    first, second = split_statements(text)
    assert first.line == 3
    assert second.line == 4
    # character offset of 'LANGUAGE' is on the statement's second line
    assert second.file_line(second.text.index("LANGUAGE")) == 5
    # PL/pgSQL line 3 of the body ('  bad;') is file line 7
    assert second.body_line(3) == 7


def test_comment_only_tail_is_not_a_statement() -> None:
    assert split_statements("SELECT 1;\n-- trailing\n/* done */\n") [-1].text == "SELECT 1"
    assert len(split_statements("SELECT 1;\n-- trailing\n")) == 1


def test_positional_dollar_parameters_are_not_quotes() -> None:
    stmts = split_statements("PREPARE p AS SELECT $1::int; SELECT 2;")
    assert [s.text for s in stmts] == ["PREPARE p AS SELECT $1::int", "SELECT 2"]


@pytest.mark.parametrize("f", SqlTree.load().all_files(), ids=lambda f: f.name)
def test_package_files_split_like_the_postgres_scanner(f) -> None:
    ours = split_statements(f.text)
    theirs = [s.strip() for s in pglast.split(f.text, with_parser=False)]
    theirs = [s for s in theirs if _significant(s)]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert b.endswith(a.text)


def _significant(s: str) -> bool:
    return bool(split_statements(s))


_atoms = st.sampled_from(
    [
        "SELECT 1",
        "SELECT 'a;b'",
        "SELECT 'it''s'",
        'SELECT "semi;colon"',
        "SELECT $$;$$",
        "SELECT $q$ $$ ; $q$",
        "SELECT E'\\';'",
        "SELECT 1 /* ; */",
        "SELECT 2 -- ;\n",
        "SELECT x$y FROM t",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_atoms, min_size=1, max_size=8))
def test_any_sequence_of_statements_splits_back(parts: list[str]) -> None:
    text = ";\n".join(parts) + ";"
    theirs = [s for s in (x.strip() for x in pglast.split(text, with_parser=False)) if s]
    assert len(split_statements(text)) == len(theirs) == len(parts)
