"""The privacy boundary: `lakehouse sql` cannot write or read paths, Silver holds no raw id, no
exact count is published, and the budget cannot be refunded - by SQL, by losing the Gold ledger, or
by a storage error that reads as "no ledger"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from oracle import visitor_ids
from support import cli, lakehouse_subprocess, run_cli, snapshot, versions, write_conf

REFUSED = [
    # writes through the front door
    ("INSERT INTO gold.privacy_ledger SELECT * FROM gold.privacy_ledger", "INSERT"),
    ("DELETE FROM gold.privacy_ledger WHERE release_id = 1", "DELETE"),
    ("DELETE FROM silver.sessions WHERE continent = 'Europe'", "DELETE"),
    ("UPDATE gold.sessions_per_continent SET dp_sessions = 0", "UPDATE"),
    ("TRUNCATE TABLE silver.quarantine", "TRUNCATE TABLE"),
    ("MERGE INTO gold.privacy_ledger t USING gold.privacy_ledger s ON t.release_id = s.release_id "
     "WHEN MATCHED THEN DELETE", "MERGE"),
    ("INSERT OVERWRITE DIRECTORY '/tmp/lakehouse-leak' SELECT * FROM silver.sessions", "INSERT OVERWRITE DIRECTORY"),
    ("CREATE TABLE gold.copy AS SELECT * FROM silver.sessions", "CREATE TABLE AS SELECT"),
    ("DROP TABLE gold.privacy_ledger", "DROP TABLE"),
    ("ALTER TABLE gold.privacy_ledger SET TBLPROPERTIES ('x' = 'y')", "ALTER TABLE"),
    ("VACUUM gold.privacy_ledger RETAIN 0 HOURS", "VACUUM"),
    ("OPTIMIZE gold.privacy_ledger", "OPTIMIZE"),
    ("RESTORE TABLE gold.privacy_ledger TO VERSION AS OF 0", "RESTORE"),
    ("CACHE TABLE gold.privacy_ledger", "CACHE TABLE"),
    ("SET spark.databricks.delta.retentionDurationCheck.enabled = false", "SET"),
    ("ADD JAR /tmp/evil.jar", "ADD JAR"),
    ("USE gold", "USE"),
    ("CREATE TEMP VIEW v AS SELECT * FROM silver.sessions", "CREATE VIEW"),
    # reading files directly
    ("SELECT * FROM text.`/etc/hostname`", "a direct read of the path /etc/hostname"),
    ("SELECT * FROM delta.`/tmp`", "a direct read of the path /tmp"),
    ("SELECT * FROM parquet.`/tmp`", "a direct read of the path /tmp"),
    ("DESCRIBE HISTORY delta.`/tmp`", "a direct read of the path /tmp"),
    ("SELECT * FROM gold.`/etc/hostname`", "the table name gold./etc/hostname"),
    # evasions: a comment, a CTE in front, a subquery, EXPLAIN around it, a computed identifier,
    # dynamic SQL, a program run by TRANSFORM, Java reflection
    ("/* just a comment */ DELETE FROM gold.privacy_ledger", "DELETE"),
    ("-- a line comment\nINSERT INTO gold.privacy_ledger SELECT * FROM gold.privacy_ledger", "INSERT"),
    ("WITH x AS (SELECT * FROM gold.privacy_ledger) INSERT INTO gold.privacy_ledger SELECT * FROM x", "INSERT"),
    ("SELECT * FROM gold.privacy_ledger WHERE release_id IN (SELECT 1 FROM text.`/etc/hostname`)",
     "a direct read of the path /etc/hostname"),
    ("SELECT (SELECT count(*) FROM json.`/etc`) AS n", "a direct read of the path /etc"),
    ("EXPLAIN DELETE FROM gold.privacy_ledger", "DELETE"),
    ("SELECT * FROM IDENTIFIER(concat('text.', '`/etc/hostname`'))", "IDENTIFIER(...) with a computed name"),
    ("EXECUTE IMMEDIATE 'DELETE FROM gold.privacy_ledger'", "EXECUTE IMMEDIATE"),
    ("SELECT TRANSFORM(release_id) USING 'touch /tmp/lakehouse-pwned' FROM gold.privacy_ledger", "TRANSFORM"),
    ("SELECT reflect('java.lang.System', 'exit', 0)", "the function reflect()"),
    ("SELECT java_method('java.lang.System', 'getenv', 'LAKEHOUSE_PSEUDONYM_KEY')", "the function java_method()"),
    ("SELECT IDENTIFIER('java_method')('java.lang.System', 'getenv', 'LAKEHOUSE_PSEUDONYM_KEY')",
     "IDENTIFIER(...) as a function name"),
    ("WITH a AS (SELECT IDENTIFIER('reflect')('java.lang.System', 'getenv', 'X') k) SELECT * FROM a",
     "IDENTIFIER(...) as a function name"),
    ("SELECT stack(1, IDENTIFIER('try_reflect')('java.lang.System', 'exit', 0))", "IDENTIFIER(...) as a function name"),
    ("SELECT * FROM sessions", "the table name sessions"),
]

ALLOWED = [
    ("SHOW TABLES IN gold", "tableName"),
    ("SHOW TABLES IN silver", "tableName"),
    ("DESCRIBE gold.privacy_ledger", "col_name"),
    ("DESCRIBE HISTORY gold.privacy_ledger", "operation"),
    ("SHOW TBLPROPERTIES gold.privacy_ledger", "key"),
    ("EXPLAIN SELECT count(*) FROM gold.privacy_ledger", "plan"),
    ("WITH l AS (SELECT * FROM gold.privacy_ledger) SELECT count(*) AS n FROM l", "n"),
    ("SELECT continent, sum(dp_sessions) AS s FROM gold.sessions_per_continent VERSION AS OF 0 GROUP BY continent",
     "continent"),
    ("SELECT * FROM range(3)", "id"),
]


@pytest.fixture(scope="module")
def released(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("boundary")
    root, conf = base / "lakehouse", write_conf(base / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "1200", "--seed", "71").code == 0
    assert cli(conf, root, "run").code == 0
    return root, conf


@pytest.mark.parametrize("query, what", REFUSED, ids=[q[:40] for q, _ in REFUSED])
def test_sql_refuses_anything_but_a_read_only_query(released, query, what):
    root, conf = released
    r = cli(conf, root, "sql", query)
    assert r.code == 1, r.out
    assert r.error.startswith(f"lakehouse: error: refused {what}"), r.error
    assert "read-only" in r.error and "nothing was run" in r.error


def test_refused_sql_changes_nothing(spark, released):
    """Every refused statement, one after the other: no table got a new version or other rows,
    no file appeared, the budget is what it was."""
    root, conf = released
    before = versions(spark, root), snapshot(spark, root, "gold"), snapshot(spark, root, "silver")
    for query, _ in REFUSED:
        assert cli(conf, root, "sql", query).code == 1, query
    assert (versions(spark, root), snapshot(spark, root, "gold"), snapshot(spark, root, "silver")) == before
    assert not Path("/tmp/lakehouse-pwned").exists() and not Path("/tmp/lakehouse-leak").exists()
    assert "epsilon spent: 1\n" in cli(conf, root, "budget").out


@pytest.mark.parametrize("query, column", ALLOWED, ids=[q[:40] for q, _ in ALLOWED])
def test_sql_runs_queries_and_read_only_commands(released, query, column):
    root, conf = released
    r = cli(conf, root, "sql", query, "--format", "csv")
    assert r.code == 0, r.err
    assert column in r.out.splitlines()[0]


def test_a_fresh_process_shows_gold_tables_and_refuses_a_write(released, tmp_path):
    """Through the real command line, each in its own JVM (no catalog state from earlier calls)."""
    root, conf = released
    scratch = tmp_path / "process-tmp"  # the process's temp folder: it must leave nothing there
    scratch.mkdir()
    show = lakehouse_subprocess("--conf", str(conf), "--root", str(root), "sql", "SHOW TABLES IN gold", "--format", "csv",
                                env={"TMPDIR": str(scratch)})
    out, err = show.communicate(timeout=300)
    assert show.returncode == 0, err
    # nothing left in the process's temp folder: Spark's warehouse folder and the JVM's log are removed
    leftovers = [p for p in scratch.rglob("*") if p.is_file() or p.name.startswith("lakehouse-warehouse-")]
    assert leftovers == []
    # a fresh process prints only what a user needs: no JVM start-up chatter
    assert "incubator" not in err and "log4j" not in err and "SLF4J" not in err, err
    names = {line.split(",")[1] for line in out.splitlines()[1:]}
    assert names == {"privacy_ledger", "sessions_per_continent", "avg_session_duration_per_device",
                     "sessions_per_country"}
    delete = lakehouse_subprocess("--conf", str(conf), "--root", str(root), "sql",
                                  "WITH a AS (SELECT 1) DELETE FROM gold.privacy_ledger")
    out, err = delete.communicate(timeout=300)
    assert delete.returncode == 1 and "refused DELETE" in err.splitlines()[-1]


def test_silver_holds_no_raw_visitor_id(spark, released):
    root, _ = released
    raw_ids = visitor_ids(sorted((root / "bronze").glob("*.jsonl")))
    assert len(raw_ids) > 100
    sessions = spark.read.format("delta").load(str(root / "silver" / "sessions"))
    strings = [f.name for f in sessions.schema.fields if f.dataType.simpleString() == "string"]
    for row in sessions.select(*strings).collect():
        for value in row:
            assert not any(raw in value for raw in raw_ids if len(raw) >= 8), value
    # session_id is a 64-hex-digit pseudonym, unique, and never a user's pseudonym
    ids = [r[0] for r in sessions.select("session_id").collect()]
    assert len(set(ids)) == len(ids) and all(len(i) == 64 for i in ids)
    users = {r[0] for r in sessions.select("user_id").distinct().collect()}
    assert not users & set(ids)


def test_a_lakehouse_with_raw_session_ids_is_refused_with_the_fix(spark, root, tmp_path):
    """A Silver table built before session_id became a pseudonym (no scheme property) is not
    appended to: rows with two session_id schemes would defeat the MERGE's de-duplication."""
    from lakehouse import catalog, schemas

    catalog.create_table(spark, str(root / "silver" / "sessions"), schemas.SILVER_SESSIONS,
                         {"delta.enableChangeDataFeed": "true"})
    assert run_cli("--root", str(root), "generate", "--sessions", "50").code == 0
    r = run_cli("--root", str(root), "ingest")
    assert r.code == 1
    assert "built by an older dp-lakehouse whose session_id holds the raw fullVisitorId" in r.error
    assert "re-ingest" in r.error and "--root NEW_ROOT" in r.error
    assert spark.read.format("delta").load(str(root / "silver" / "sessions")).count() == 0


def _ledger(spark, root: Path) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(str(root / "gold" / "privacy_ledger")).collect())


def test_a_deleted_gold_ledger_is_republished_from_the_restricted_record(spark, root, tmp_path):
    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "400", "--seed", "72").code == 0
    assert cli(conf, root, "run").code == 0
    published = _ledger(spark, root)
    shutil.rmtree(root / "gold" / "privacy_ledger")  # lost, or deleted by someone with access to `gold`

    r = cli(conf, root, "budget")  # read-only: says what is missing, spends and writes nothing
    assert r.code == 0, r.err
    assert "epsilon spent: 1\n" in r.out and "missing 3 row(s)" in r.out
    assert not (root / "gold" / "privacy_ledger").exists()

    assert cli(conf, root, "generate", "--sessions", "300", "--seed", "73").code == 0
    r = cli(conf, root, "run")
    assert r.code == 0, r.err
    assert "gold.privacy_ledger was missing 3 row(s) of silver.release_audit: republished them" in r.err
    assert "release 2 (incremental)" in r.out  # the budget was not reset: release 2, not 1 again
    ledger = _ledger(spark, root)
    assert set(published) <= set(ledger) and len(ledger) == 6
    assert "epsilon spent: 2\n" in cli(conf, root, "budget").out


@pytest.mark.parametrize("tamper", ["extra", "changed"])
def test_a_gold_ledger_with_rows_the_record_lacks_is_refused(spark, root, tmp_path, tamper):
    from delta.tables import DeltaTable

    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "400", "--seed", "74").code == 0
    assert cli(conf, root, "run").code == 0
    path = str(root / "gold" / "privacy_ledger")
    if tamper == "extra":  # a refund attempt: a ledger with a negative spend appended
        from pyspark.sql import functions as F
        spark.read.format("delta").load(path).limit(1).withColumn("epsilon", F.lit(-1.0)) \
            .write.format("delta").mode("append").save(path)
    else:  # a row's epsilon lowered in place: Delta refuses it (append-only), unless that is undone first
        with pytest.raises(Exception, match="(?i)append"):
            DeltaTable.forPath(spark, path).update("metric = 'sessions_per_continent'", {"epsilon": "0.01"})
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.appendOnly' = 'false')")
        DeltaTable.forPath(spark, path).update("metric = 'sessions_per_continent'", {"epsilon": "0.01"})
    for args in (["budget"], ["run"]):
        r = cli(conf, root, *args)
        assert r.code == 1, r.out
        assert "gold.privacy_ledger holds 1 row(s) that silver.release_audit does not" in r.error
    assert "release 2" not in r.out


def test_a_lost_restricted_record_is_refused_not_read_as_zero(root, tmp_path):
    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "400", "--seed", "75").code == 0
    assert cli(conf, root, "run").code == 0
    shutil.rmtree(root / "silver" / "release_audit")
    for args in (["budget"], ["release"]):
        r = cli(conf, root, *args)
        assert r.code == 1
        assert "silver.release_audit" in r.error and "is missing but Gold holds releases" in r.error


def test_a_storage_error_in_the_record_is_an_error_not_an_empty_budget(root, tmp_path):
    """An unreadable commit of the restricted record (a storage fault, a half-restored backup)
    must stop budget and release; before, any storage error read as "no ledger", i.e. 0 spent."""
    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "400", "--seed", "76").code == 0
    assert cli(conf, root, "run").code == 0
    commit = root / "silver" / "release_audit" / "_delta_log" / "00000000000000000000.json"
    commit.write_text("{not a delta commit")
    for args in (["budget"], ["release"]):
        r = cli(conf, root, *args)
        assert r.code == 1, r.out
        assert "epsilon spent: 0" not in r.out


def test_delta_per_release_has_a_sane_upper_bound(tmp_path):
    conf = tmp_path / "delta.toml"
    conf.write_text("[privacy]\ndelta_per_release = 0.1\n")
    r = run_cli("--conf", str(conf), "budget")
    assert r.code == 1 and "privacy.delta_per_release: must be in [0, 0.001)" in r.error


def test_ledger_and_gold_columns_hold_no_exact_count(spark, released):
    root, _ = released
    for table in ("privacy_ledger", "sessions_per_continent", "avg_session_duration_per_device",
                  "sessions_per_country"):
        columns = set(spark.read.format("delta").load(str(root / "gold" / table)).columns)
        assert not columns & {"rows_in", "rows_late", "count", "users", "true_value"}, table
    root, conf = released
    audit = json.loads(cli(conf, root, "sql", "SELECT max(rows_in) AS n FROM silver.release_audit",
                           "--format", "json").out)
    assert audit["n"] > 1000  # the exact size is kept, on the restricted side


def test_a_rewritten_restricted_record_is_refused(spark, root, tmp_path):
    """Deleting rows of silver.release_audit would refund their spend: Delta refuses it (append-only);
    done anyway (the property undone first), every later run refuses, naming the change."""
    from delta.tables import DeltaTable

    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "400", "--seed", "77").code == 0
    assert cli(conf, root, "run").code == 0
    audit = str(root / "silver" / "release_audit")
    with pytest.raises(Exception, match="(?i)append"):
        DeltaTable.forPath(spark, audit).delete("release_id = 1")
    spark.sql(f"ALTER TABLE delta.`{audit}` SET TBLPROPERTIES ('delta.appendOnly' = 'false')")
    DeltaTable.forPath(spark, audit).delete("release_id = 1")
    for args in (["budget"], ["release"]):
        r = cli(conf, root, *args)
        assert r.code == 1 and "silver.release_audit" in r.error and "changed other than by appending" in r.error


def test_a_commit_without_commit_info_that_removes_a_spend_is_refused(root, tmp_path):
    """A commit written into silver.release_audit by hand, removing release 1's rows and carrying no
    commitInfo (Delta's writer, which enforces append-only, never saw it); release 2 stays, so Gold
    holds no release the record lacks. Only the history shows the change: every reader must see it
    (delta-rs alone skips such a commit)."""
    conf = write_conf(tmp_path / "none.toml")
    for seed, start in ((81, "2026-10-01"), (82, "2026-10-15")):
        assert cli(conf, root, "generate", "--sessions", "300", "--seed", str(seed), "--start", start).code == 0
        assert cli(conf, root, "run").code == 0
    log = root / "silver" / "release_audit" / "_delta_log"
    commits = sorted(log.glob("*.json"))
    first_spend = next(json.loads(line)["add"] for c in commits for line in c.read_text().splitlines()
                       if "add" in json.loads(line))
    removal = {"remove": {"path": first_spend["path"], "deletionTimestamp": 1, "dataChange": True}}
    (log / f"{len(commits):020d}.json").write_text(json.dumps(removal) + "\n")
    for args in (["budget"], ["release"]):
        r = cli(conf, root, *args)
        assert r.code == 1 and "silver.release_audit" in r.error and "changed other than by appending" in r.error


def test_an_emptied_record_beside_gold_is_refused(spark, root, tmp_path):
    """The record replaced by an empty one and the ledger deleted: Gold's metric tables still hold
    release 1, so the spend is known to be lost - not zero."""
    from lakehouse import catalog, schemas

    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "400", "--seed", "78").code == 0
    assert cli(conf, root, "run").code == 0
    shutil.rmtree(root / "silver" / "release_audit")
    shutil.rmtree(root / "gold" / "privacy_ledger")
    # a new, empty record, made as dp-lakehouse makes it: its history alone looks clean
    catalog.create_table(spark, str(root / "silver" / "release_audit"), schemas.RELEASE_AUDIT, catalog.APPEND_ONLY)
    for args in (["budget"], ["release"]):
        r = cli(conf, root, *args)
        assert r.code == 1 and "holds release 1 but silver.release_audit records releases up to 0" in r.error


def test_a_corrupt_staged_release_names_the_file_and_the_fix(root, tmp_path):
    conf = write_conf(tmp_path / "none.toml")
    assert cli(conf, root, "generate", "--sessions", "300", "--seed", "79").code == 0
    assert cli(conf, root, "run").code == 0
    staging = root / "silver" / "_release_staging"
    (staging / "release-0000000099.json").write_text('{"release_id": 99, "tables": {"silver.rel')
    (staging / "notes.txt").write_text("not ours")  # ignored: not a staged release's name
    for args in (["budget"], ["release"]):
        r = cli(conf, root, *args)
        assert r.code == 1 and "release-0000000099.json cannot be read" in r.error and "restore it" in r.error
