"""The read-only check on Spark's plans, below the CLI: the analysed-plan half on its own (the
parsed-plan half is tested through the CLI in tests/system/test_privacy_boundary.py)."""

from __future__ import annotations

import pytest

from lakehouse import jvm_bridge, sql_guard


@pytest.mark.parametrize("query", ["SELECT reflect('java.lang.System', 'getenv', 'X')",
                                   "SELECT java_method('java.lang.Math', 'abs', -1)",
                                   "SELECT a FROM (SELECT try_reflect('java.lang.Math', 'abs', -1) AS a)"])
def test_the_analysed_plan_refuses_reflection_however_it_was_named(spark, query):
    plan = jvm_bridge.analyzed_plan(spark.sql(query))  # analysed only: nothing runs
    with pytest.raises(sql_guard.SqlRefused, match="calls Java methods"):
        sql_guard.check_analyzed(plan, set())


def test_the_analysed_plan_refuses_files_outside_the_registered_tables(spark, tmp_path):
    spark.range(2).write.format("delta").save(str(tmp_path / "t"))
    plan = jvm_bridge.analyzed_plan(spark.read.format("delta").load(str(tmp_path / "t")))
    with pytest.raises(sql_guard.SqlRefused, match="is not a silver.\\* or gold.\\* table"):
        sql_guard.check_analyzed(plan, {str(tmp_path / "other")})
    sql_guard.check_analyzed(plan, {str(tmp_path / "t")})  # its own location is allowed


def test_the_parsed_plan_names_what_a_query_reads(spark):
    referenced = sql_guard.check_parsed(jvm_bridge.parse_plan(
        spark, "WITH x AS (SELECT * FROM gold.a) SELECT * FROM x JOIN silver.b USING (k) "
               "WHERE k IN (SELECT k FROM gold.c VERSION AS OF 1)"))
    assert sorted(referenced.tables) == ["gold.a", "gold.c", "silver.b"] and referenced.is_query
    show = sql_guard.check_parsed(jvm_bridge.parse_plan(spark, "SHOW TABLES IN gold"))
    assert show.namespaces == ["gold"] and not show.is_query
