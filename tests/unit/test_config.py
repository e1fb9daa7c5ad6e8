"""Configuration: the embedded default, and errors that name the key - all before any Spark work."""

from __future__ import annotations

import dataclasses

import pytest
from support import REPO, run_cli

from lakehouse.config import Config, ConfigError, load_config, parse_config

BASE_METRIC = {"kind": "COUNT", "group_by": "continent", "public_partitions": ["Europe"]}


def test_conf_local_toml_is_the_embedded_default():
    from_file = load_config(REPO / "conf" / "local.toml")
    assert dataclasses.replace(from_file, source=Config().source) == Config()


@pytest.mark.parametrize("data, message", [
    ({"storage": {"rot": "x"}}, "unknown key 'storage.rot'"),
    ({"sparkk": {}}, "unknown key 'sparkk'"),
    ({"privacy": {"epsilon_per_release": "1"}}, "privacy.epsilon_per_release: expected float, got str"),
    ({"privacy": {"epsilon_per_release": 0}}, "privacy.epsilon_per_release: must be > 0"),
    ({"privacy": {"epsilon_per_release": -1.0}}, "privacy.epsilon_per_release: must be > 0"),
    ({"privacy": {"delta_per_release": 1.0}}, "privacy.delta_per_release: must be in [0, 0.001)"),
    ({"privacy": {"delta_per_release": 1e-3}}, "privacy.delta_per_release: must be in [0, 0.001)"),
    ({"privacy": {"delta_per_release": 0.1}}, "far below 1 / the number of users"),
    ({"privacy": {"delta_per_release": -1e-9}}, "privacy.delta_per_release: must be in [0, 0.001)"),
    ({"privacy": {"delta_per_release": 1e-4, "delta_cap": 1e-5}}, "exceeds privacy.delta_cap"),
    ({"privacy": {"delta_cap": 1.0}}, "privacy.delta_cap: must be in [0, 1)"),
    ({"privacy": {"period": "hour"}}, "privacy.period: must be one of none, day, week, month, got 'hour'"),
    ({"privacy": {"period": 1}}, "privacy.period: must be one of none, day, week, month"),
    ({"privacy": {"release": "live"}}, "privacy.release: must be one of closed, continual"),
    ({"privacy": {"release": "continual", "period": "none"}}, "continual release needs a period"),
    ({"privacy": {"release": "continual", "engine": "pipelinedp"}}, "runs on the \"spark\" engine only"),
    ({"privacy": {"close_after_hours": -1}}, "privacy.close_after_hours: must be >= 0"),
    ({"privacy": {"max_releases_per_period": 0}}, "privacy.max_releases_per_period: must be in [1, 4096]"),
    ({"privacy": {"first_period": "yesterday"}}, "privacy.first_period: must be a date YYYY-MM-DD"),
    ({"spark": {"conf": {"spark.sql.session.timeZone": "Asia/Tokyo"}}},
     "spark.conf.spark.sql.session.timeZone: is set by dp-lakehouse and may not be changed"),
    ({"spark": {"conf": {"spark.redaction.regex": "none"}}}, "spark.conf.spark.redaction.regex: is set by"),
    ({"privacy": {"epsilon_per_release": 2.0, "epsilon_cap": 1.0}}, "exceeds privacy.epsilon_cap"),
    ({"privacy": {"noise_kind": "cauchy"}}, "privacy.noise_kind: must be one of laplace, gaussian"),
    ({"privacy": {"noise_kind": "gaussian", "delta_per_release": 0.0}}, "must be > 0 with gaussian noise"),
    ({"privacy": {"engine": "beam"}}, "privacy.engine: must be one of spark, pipelinedp"),
    ({"spark": {"shuffle_partitions": 0}}, "spark.shuffle_partitions: must be >= 1"),
    ({"ingest": {"max_files_per_trigger": True}}, "ingest.max_files_per_trigger: expected int, got bool"),
    ({"metrics": {"m": {**BASE_METRIC, "kind": "MEDIAN"}}}, "metrics.m.kind: must be one of COUNT, SUM, MEAN"),
    ({"metrics": {"m": {**BASE_METRIC, "group_by": "user_id"}}}, "metrics.m.group_by: must be a Silver column"),
    ({"metrics": {"m": {**BASE_METRIC, "max_partitions_contributed": 0}}},
     "metrics.m.max_partitions_contributed: must be between 1 and 2147483647, got 0"),
    ({"metrics": {"m": {**BASE_METRIC, "max_contributions_per_partition": 0}}},
     "metrics.m.max_contributions_per_partition: must be between 1 and 2147483647, got 0"),
    ({"metrics": {"m": {**BASE_METRIC, "max_contributions_per_partition": 2**31}}},
     "metrics.m.max_contributions_per_partition: must be between 1 and 2147483647, got 2147483648"),
    ({"metrics": {"m": {**BASE_METRIC, "kind": "MEAN", "value": "total_time_on_page", "min_value": 10,
                        "max_value": 1}}}, "metrics.m.min_value: (10.0) is greater than max_value (1.0)"),
    ({"metrics": {"m": {**BASE_METRIC, "kind": "MEAN", "value": "total_time_on_page", "min_value": 5,
                        "max_value": 5}}}, "metrics.m.min_value: equals max_value (5.0)"),
    ({"metrics": {"m": {**BASE_METRIC, "kind": "MEAN", "value": "total_time_on_page"}}},
     "metrics.m.min_value: MEAN needs both min_value and max_value"),
    ({"metrics": {"m": {**BASE_METRIC, "kind": "SUM", "value": "user_id", "min_value": 0, "max_value": 1}}},
     "metrics.m.value: SUM needs a numeric Silver column"),
    ({"metrics": {"m": {**BASE_METRIC, "share": 0}}}, "metrics.m.share: must be > 0"),
    ({"metrics": {"m": {**BASE_METRIC, "colour": "red"}}}, "unknown key 'metrics.m.colour'"),
    ({"metrics": {"m": {"kind": "COUNT", "group_by": "country"}}, "privacy": {"delta_per_release": 0.0}},
     "DP partition selection, which needs privacy.delta_per_release > 0"),
    ({"metrics": {"Bad Name": BASE_METRIC}}, "[metrics.Bad Name]: the metric name is its Gold table name"),
    ({"metrics": {"privacy_ledger": BASE_METRIC}}, "reserved for the ledger table"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="test.toml")
    assert str(err.value).startswith("test.toml: ")
    assert message in str(err.value)


def test_enum_values_are_typed_and_case_insensitive():
    from lakehouse.config import Engine, NoiseKind, Period, ReleaseMode

    privacy = parse_config({"privacy": {"period": "Week", "release": "CONTINUAL", "noise_kind": "Gaussian"}}).privacy
    assert (privacy.period, privacy.release, privacy.noise_kind, privacy.engine) == (
        Period.WEEK, ReleaseMode.CONTINUAL, NoiseKind.GAUSSIAN, Engine.SPARK)
    assert isinstance(privacy.period, Period) and privacy.period == "week"


def test_metrics_and_defaults_parse():
    config = parse_config({"metrics": {"visits": {**BASE_METRIC, "kind": "privacy_id_count"}},
                           "spark": {"conf": {"spark.sql.ansi.enabled": True}}})
    (metric,) = config.metrics
    assert (metric.kind, metric.output, metric.table) == ("PRIVACY_ID_COUNT", "dp_users", "gold.visits")
    assert metric.public_partitions == ("Europe",)
    assert config.spark.conf == {"spark.sql.ansi.enabled": "true"}


def test_bad_config_on_the_command_line_is_one_line_and_non_zero(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text("[privacy]\nepsilon_per_release = -1.0\n")
    r = run_cli("--conf", str(conf), "budget")
    assert r.code == 1
    assert r.error == f"lakehouse: error: {conf}: privacy.epsilon_per_release: must be > 0, got -1.0"

    conf.write_text("[privacy\n")
    r = run_cli("--conf", str(conf), "budget")
    assert r.code == 1 and "not valid TOML" in r.error

    r = run_cli("--conf", str(tmp_path / "missing.toml"), "budget")
    assert r.code == 1 and "does not exist" in r.error


def test_help_explains_every_command():
    r = run_cli("--help")
    assert r.code == 0
    for command in ("generate", "ingest", "release", "run", "reprocess", "sql", "budget", "report", "upload", "maintain"):
        assert command in r.out
    r = run_cli("sql", "--help")
    assert r.code == 0 and "--format" in r.out and "VERSION AS OF" in r.out
    r = run_cli("reprocess")
    assert r.code == 2 and "--silver-version" in r.err
    r = run_cli("maintain", "--help")
    assert r.code == 0 and "--retain-hours" in r.out and "VACUUM" in r.out
