def test_cluster_answers(db):
    assert db.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_new_db_is_deployed(new_db):
    import psycopg

    with psycopg.connect(new_db()) as conn:
        assert conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
