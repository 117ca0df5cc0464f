"""oVirt's contract for oVirt's names: a package function that carries an oVirt 4.5 name
takes oVirt's parameters (names, types, order; extra trailing ones only with defaults) and
returns oVirt's result type, so that an engine DAL written for oVirt calls it unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

FACTS = Path(__file__).resolve().parent / "fixtures" / "ovirt45_functions.txt"


def ovirt45() -> dict[str, tuple[list[str], str]]:
    out = {}
    for line in FACTS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, params, result = line.split("|")
        out[name] = ([p for p in params.split(", ") if p], result)
    return out


OVIRT = ovirt45()

OURS = """
SELECT p.proname::text AS name, p.pronargdefaults AS defaults,
       coalesce(array(
           SELECT a.n || ' ' || format_type(a.t, NULL)
           FROM unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[])
               WITH ORDINALITY AS a (n, t, i)
           ORDER BY a.i), '{}') AS params,
       pg_get_function_result(p.oid) AS result
FROM pg_proc AS p
JOIN public.package_objects AS o
    ON o.object_type = 'function' AND o.object_identity::regprocedure = p.oid
ORDER BY 1
"""


def test_the_recorded_facts_are_there() -> None:
    assert len(OVIRT) >= 100
    assert OVIRT["getimagebyimageguid"] == (["v_image_guid uuid"], "SETOF vm_images_view")


def test_every_function_with_an_ovirt_name_keeps_ovirts_contract(db) -> None:
    rows = db.execute(OURS).fetchall()
    assert len(rows) >= 100
    problems = []
    checked = 0
    for r in rows:
        if r["name"] not in OVIRT:
            continue
        checked += 1
        params, result = OVIRT[r["name"]]
        ours = list(r["params"])
        extra = len(ours) - len(params)
        if ours[: len(params)] != params:
            problems.append(f"{r['name']}: parameters {ours} where oVirt 4.5 has {params}")
        elif extra > r["defaults"]:
            problems.append(f"{r['name']}: {extra} extra parameters, not all with defaults")
        if r["result"] != result:
            problems.append(f"{r['name']}: returns {r['result']} where oVirt 4.5 returns {result}")
    assert checked >= 100
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("name", ["insertvmstatic", "insertvmtemplate"])
def test_the_package_does_not_take_an_ovirt_name_it_does_not_implement(db, name: str) -> None:
    # oVirt's InsertVmStaticRow/InsertVmTemplateRow take ~100 parameters; the package needs a
    # few columns only, so its functions carry names of their own.
    params, _ = OVIRT[name]
    assert len(params) > 50
    assert db.execute("SELECT count(*) AS n FROM pg_proc WHERE proname = %s", (name,)).fetchone() == {
        "n": 0
    }
