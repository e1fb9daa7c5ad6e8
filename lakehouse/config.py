"""Configuration: TOML files validated once, at start-up, into frozen typed objects.

Every key has a default equal to ``conf/local.toml`` (the embedded default), so running without a
config file behaves exactly like running with ``--conf conf/local.toml``. Unknown keys, wrong types
and impossible values raise :class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONF_PATH = Path("conf/local.toml")
CONF_ENV = "LAKEHOUSE_CONF"


class MetricKind(enum.StrEnum):
    COUNT = "COUNT"
    SUM = "SUM"
    MEAN = "MEAN"
    PRIVACY_ID_COUNT = "PRIVACY_ID_COUNT"

    @property
    def has_value(self) -> bool:
        """SUM and MEAN aggregate a clamped value column; COUNT and PRIVACY_ID_COUNT do not."""
        return self in (MetricKind.SUM, MetricKind.MEAN)


class NoiseKind(enum.StrEnum):
    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


class Engine(enum.StrEnum):
    SPARK = "spark"
    PIPELINEDP = "pipelinedp"


class PartitionSelection(enum.StrEnum):
    TRUNCATED_GEOMETRIC = "truncated_geometric"
    LAPLACE_THRESHOLDING = "laplace_thresholding"
    GAUSSIAN_THRESHOLDING = "gaussian_thresholding"


class Period(enum.StrEnum):
    """The time part of the privacy unit (user, period), in UTC by session_start."""

    NONE = "none"  # the user over the lakehouse's whole life
    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday to Sunday
    MONTH = "month"


class ReleaseMode(enum.StrEnum):
    CLOSED = "closed"  # each period released once, after it has closed
    CONTINUAL = "continual"  # running totals of open periods by tree aggregation


# Silver columns a metric may group by or aggregate; anything else is a config error, not a
# Spark AnalysisException halfway through a release.
GROUPABLE_COLUMNS = ("continent", "country", "device", "browser", "operating_system")
VALUE_COLUMNS = ("num_pageviews", "total_time_on_page")
DEFAULT_OUTPUT_COLUMN = {
    MetricKind.COUNT: "dp_count",
    MetricKind.SUM: "dp_sum",
    MetricKind.MEAN: "dp_mean",
    MetricKind.PRIVACY_ID_COUNT: "dp_users",
}
# delta is the probability that the guarantee fails outright; above this it protects nobody.
MAX_DELTA_PER_RELEASE = 1e-3
MAX_CONTRIBUTION_BOUND = 2**31 - 1  # a metric's max_partitions_contributed and max_contributions_per_partition
ENUMS: dict[str, type[enum.StrEnum]] = {cls.__name__: cls for cls in (
    MetricKind, NoiseKind, Engine, PartitionSelection, Period, ReleaseMode)}


MASTER_URL = re.compile(r"^(local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?|local-cluster\[\d+,\d+,\d+\]"
                        r"|spark://[^/:,\s]+:\d+(,[^/:,\s]+:\d+)*|yarn|k8s://\S+)$")
MASTER_HELP = "local[*] (all cores), local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT"


def master_problem(url: str) -> str | None:
    """Why `url` is not a Spark master URL Spark can use, or None."""
    return None if MASTER_URL.match(url) else f"{url!r} is not a Spark master URL: use {MASTER_HELP}"


# Spark settings the guarantees rest on; [spark.conf] may not override them.
FIXED_SPARK_SETTINGS = {
    "spark.sql.session.timeZone": "periods are UTC days, weeks and months; another time zone would move rows "
                                  "between periods and out of every release",
    "spark.sql.extensions": "Delta's SQL extension is required",
    "spark.sql.catalog.spark_catalog": "Delta's catalog is required",
    "spark.redaction.regex": "it keeps the pseudonym key and Azure credentials out of logs and the Spark UI",
    "spark.sql.redaction.string.regex": "it keeps the pseudonym key out of query plans",
}


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class StorageConfig:
    root: str = "./lakehouse-data"
    bronze: str = ""  # empty: <root>/bronze
    silver: str = ""  # empty: <root>/silver
    gold: str = ""  # empty: <root>/gold
    checkpoints: str = ""  # empty: <root>/_checkpoints


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "dp-lakehouse"
    shuffle_partitions: int = 8
    driver_memory: str = "2g"
    log_level: str = "WARN"
    ui: bool = False
    java_options: str = ""  # appended to the driver's and executors' JVM options
    # The driver's JVM (in local mode the whole job): a serial collector keeps a job's footprint
    # near what it uses (a 1M-row release: peak RSS 1.8 GB with G1's defaults, 1.0-1.25 GB with it,
    # at the same speed). When the heap must grow, it grows until 40 % of it is free, and it is not
    # given back: grown a few percent at a time (10/20), a 1M-line batch's heap took ~12 full
    # collections to reach its size (~2.9 s), and, given back after each batch, grew again with the
    # next (~110-160k page faults and full collections: in one process, warm 1M-line ingests of
    # 12.2-12.7 s and one of 14.2 s; measured with -Xlog:gc, 2026-12-07).
    # "" for the JVM's defaults.
    driver_java_options: str = "-XX:+UseSerialGC -XX:MinHeapFreeRatio=40 -XX:MaxHeapFreeRatio=100"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestConfig:
    max_files_per_trigger: int = 1000
    # A session delivered again carries the same visitStartTime; the ingest only looks in Silver
    # files whose session_start lies within this many hours of the batch's own time range, so the
    # cost of a run follows its new data, not the size of Silver.
    dedupe_window_hours: int = 48


@dataclass(frozen=True)
class PrivacyConfig:
    epsilon_per_release: float = 1.0
    delta_per_release: float = 1e-6
    epsilon_cap: float = 10.0  # per privacy unit: per period, or over the lakehouse's life (period "none")
    delta_cap: float = 1e-5
    period: Period = Period.DAY
    release: ReleaseMode = ReleaseMode.CLOSED
    close_after_hours: int = 2  # a period is closed this long after its end (late sessions still count)
    max_releases_per_period: int = 32  # continual: the tree's horizon
    # The first period ever released (YYYY-MM-DD); empty: the period of Silver's earliest session,
    # which the start of the published series then reveals. Rows of earlier periods count as late.
    first_period: str = ""
    noise_kind: NoiseKind = NoiseKind.LAPLACE
    engine: Engine = Engine.SPARK
    partition_selection: PartitionSelection = PartitionSelection.TRUNCATED_GEOMETRIC


@dataclass(frozen=True)
class MetricConfig:
    name: str
    kind: MetricKind
    group_by: str
    output: str = ""  # empty: the kind's default (dp_count, dp_sum, dp_mean, dp_users)
    public_partitions: tuple[str, ...] | None = None
    value: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    max_partitions_contributed: int = 1
    max_contributions_per_partition: int = 5
    share: float = 1.0
    pre_threshold: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MetricKind(self.kind))
        if not self.output:
            object.__setattr__(self, "output", DEFAULT_OUTPUT_COLUMN[self.kind])

    @property
    def table(self) -> str:
        return f"gold.{self.name}"


@dataclass(frozen=True)
class AzureConfig:
    account: str = ""  # empty: from AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_ACCOUNT
    # "key": AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY from the environment;
    # "msi": a managed identity, through azure-identity (SDK) and ABFS OAuth (Spark).
    auth: str = "key"
    endpoint: str = ""  # "host:port" of an emulator's Blob service (Azurite), spoken over plain HTTP
    hierarchical_namespace: bool = False  # ADLS Gen2 account (true) or flat Blob account (false)
    create_containers: bool = False
    lock_lease_seconds: int = 60


@dataclass(frozen=True)
class Config:
    source: str = "<built-in defaults>"
    storage: StorageConfig = field(default_factory=StorageConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    metrics: tuple[MetricConfig, ...] = field(default_factory=lambda: DEFAULT_METRICS)
    azure: AzureConfig | None = None

    def with_overrides(self, root: str | None = None, bronze: str | None = None,
                       master: str | None = None) -> Config:
        storage, spark = self.storage, self.spark
        if root:
            storage = dataclasses.replace(storage, root=root)
        if bronze:
            storage = dataclasses.replace(storage, bronze=bronze)
        if master:
            problem = master_problem(master)
            if problem:
                raise ConfigError(f"--master: {problem}")
            spark = dataclasses.replace(spark, master=master)
        return dataclasses.replace(self, storage=storage, spark=spark)


CONTINENTS = ("Africa", "Americas", "Asia", "Europe", "Oceania", "(not set)")
DEVICES = ("desktop", "mobile", "tablet", "(not set)")

DEFAULT_METRICS: tuple[MetricConfig, ...] = (
    MetricConfig(name="sessions_per_continent", kind=MetricKind.COUNT, group_by="continent",
                 output="dp_sessions", public_partitions=CONTINENTS),
    MetricConfig(name="avg_session_duration_per_device", kind=MetricKind.MEAN, group_by="device",
                 output="dp_avg_duration_s", public_partitions=DEVICES,
                 value="total_time_on_page", min_value=0.0, max_value=3600.0),
    MetricConfig(name="sessions_per_country", kind=MetricKind.COUNT, group_by="country",
                 output="dp_sessions", public_partitions=None),
)


# --------------------------------------------------------------------------------------------
# Loading and validation


def default_config_path() -> Path | None:
    """``$LAKEHOUSE_CONF``, else ``conf/local.toml`` in the working directory, else None."""
    env = os.environ.get(CONF_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONF_PATH if DEFAULT_CONF_PATH.is_file() else None


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, key: str, source: str) -> Any:
    """``${NAME}`` in a string value is replaced by the environment variable NAME (config by
    environment, e.g. in a container); an unset variable is an error naming the key."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{key}.{k}" if key else k, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, key, source) for v in value]
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{source}: {key}: environment variable {name} is not set")
            return os.environ[name]
        return _ENV_REF.sub(sub, value)
    return value


def load_config(path: str | Path | None) -> Config:
    """Reads and validates a config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (pass --conf FILE or set {CONF_ENV})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(_expand_env(data, "", str(path)), source=str(path))


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    where = _Where(source)
    _reject_unknown(data, {"storage", "spark", "ingest", "privacy", "metrics", "azure"}, where, "")
    storage = StorageConfig(**_section(StorageConfig, data.get("storage", {}), where, "storage"))
    spark = SparkConfig(**_section(SparkConfig, data.get("spark", {}), where, "spark"))
    ingest = IngestConfig(**_section(IngestConfig, data.get("ingest", {}), where, "ingest"))
    privacy = PrivacyConfig(**_section(PrivacyConfig, data.get("privacy", {}), where, "privacy"))
    azure = AzureConfig(**_section(AzureConfig, data["azure"], where, "azure")) if "azure" in data else None
    if "metrics" in data:
        raw_metrics = data["metrics"]
        if not isinstance(raw_metrics, dict) or not raw_metrics:
            raise where.error("metrics", "must be one or more tables [metrics.<name>]")
        metrics = tuple(_metric(name, body, where) for name, body in raw_metrics.items())
    else:
        metrics = DEFAULT_METRICS
    config = Config(source=source, storage=storage, spark=spark, ingest=ingest, privacy=privacy,
                    metrics=metrics, azure=azure)
    _validate(config, where)
    return config


@dataclass(frozen=True)
class _Where:
    source: str

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")


def _reject_unknown(body: dict[str, Any], allowed: set[str], where: _Where, prefix: str) -> None:
    for key in body:
        if key not in allowed:
            name = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where.source}: unknown key '{name}' (allowed: {', '.join(sorted(allowed))})")


def _coerce(value: Any, expected: Any, key: str, where: _Where) -> Any:
    """Checks a TOML value against the dataclass field type (its annotation, as text); ints are
    accepted for floats; enum values are matched case-insensitively."""
    kind = expected if isinstance(expected, str) else getattr(expected, "__name__", str(expected))
    kind = kind.replace(" ", "").removesuffix("|None")
    if kind in ENUMS:
        choices = ENUMS[kind]
        if isinstance(value, str):
            for choice in choices:
                if value.lower() == choice.value.lower():
                    return choice
        raise ConfigError(f"{where.source}: {key}: must be one of {', '.join(c.value for c in choices)}, "
                          f"got {value!r}")
    ok = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "dict[str,str]": lambda v: isinstance(v, dict) and all(isinstance(x, (str, int, float, bool)) for x in v.values()),
    }[kind]
    if not ok(value):
        raise ConfigError(f"{where.source}: {key}: expected {kind.replace('dict[str,str]', 'a table of strings')}, "
                          f"got {type(value).__name__} {value!r}")
    if kind == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where.source}: {key}: must be a finite number, got {value!r}")
    if kind == "dict[str,str]":
        value = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    return value


def _section(cls: type, body: Any, where: _Where, name: str, exclude: frozenset[str] = frozenset()) -> Any:
    """A [name] table -> cls, every key checked against cls's fields (except `exclude`, set by the caller)."""
    if not isinstance(body, dict):
        raise ConfigError(f"{where.source}: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}
    _reject_unknown(body, set(fields), where, name)
    return {k: _coerce(v, fields[k].type, f"{name}.{k}", where) for k, v in body.items()}


def _metric(name: str, body: Any, where: _Where) -> MetricConfig:
    key = f"metrics.{name}"
    if not name.isidentifier() or name != name.lower():
        raise ConfigError(f"{where.source}: [{key}]: the metric name is its Gold table name; "
                          "use lower_case letters, digits and underscores")
    if isinstance(body, dict):
        for required in ("kind", "group_by"):
            if required not in body:
                raise ConfigError(f"{where.source}: {key}.{required} is required")
    partitions = body.get("public_partitions") if isinstance(body, dict) else None
    fields = _section(MetricConfig, {k: v for k, v in body.items() if k != "public_partitions"}
                      if isinstance(body, dict) else body, where, key, exclude=frozenset({"name"}))
    if partitions is not None:
        if not isinstance(partitions, list) or not all(isinstance(p, str) for p in partitions) or not partitions:
            raise ConfigError(f"{where.source}: {key}.public_partitions: must be a non-empty list of strings "
                              "(leave it out for DP partition selection)")
        if len(set(partitions)) != len(partitions):
            raise ConfigError(f"{where.source}: {key}.public_partitions: lists a partition twice")
    return MetricConfig(name=name, public_partitions=tuple(partitions) if partitions is not None else None, **fields)


def _validate(config: Config, where: _Where) -> None:
    s = config.storage
    if not s.root and not (s.silver and s.gold):
        raise where.error("storage.root", "is empty: set storage.root, or both storage.silver and storage.gold")
    sp = config.spark
    problem = master_problem(sp.master)
    if problem:
        raise where.error("spark.master", problem)
    for key in sorted(set(FIXED_SPARK_SETTINGS) & set(sp.conf)):
        raise where.error(f"spark.conf.{key}", f"is set by dp-lakehouse and may not be changed: {FIXED_SPARK_SETTINGS[key]}")
    if sp.shuffle_partitions < 1:
        raise where.error("spark.shuffle_partitions", f"must be >= 1, got {sp.shuffle_partitions}")
    if sp.log_level.upper() not in ("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"):
        raise where.error("spark.log_level", f"must be one of DEBUG, INFO, WARN, ERROR, got {sp.log_level!r}")
    if config.ingest.max_files_per_trigger < 1:
        raise where.error("ingest.max_files_per_trigger", f"must be >= 1, got {config.ingest.max_files_per_trigger}")
    if config.ingest.dedupe_window_hours < 0:
        raise where.error("ingest.dedupe_window_hours", f"must be >= 0, got {config.ingest.dedupe_window_hours}")
    _validate_privacy(config.privacy, where)
    names = set()
    for metric in config.metrics:
        _validate_metric(metric, config.privacy, where)
        names.add(metric.name)
    if "privacy_ledger" in names:
        raise where.error("metrics.privacy_ledger", "the name privacy_ledger is reserved for the ledger table")
    if config.azure is not None:
        az = config.azure
        if az.auth not in ("key", "msi"):
            raise where.error("azure.auth", f"must be 'key' or 'msi', got {az.auth!r}")
        if az.lock_lease_seconds < 15 or az.lock_lease_seconds > 60:
            raise where.error("azure.lock_lease_seconds", "must be between 15 and 60 (Blob lease limits)")
        if az.endpoint and ("://" in az.endpoint or az.endpoint.count(":") != 1):
            raise where.error("azure.endpoint", f"must be host:port without a scheme, got {az.endpoint!r}")


def _validate_privacy(p: PrivacyConfig, where: _Where) -> None:
    if not p.epsilon_per_release > 0:
        raise where.error("privacy.epsilon_per_release", f"must be > 0, got {p.epsilon_per_release}")
    if not 0 <= p.delta_per_release < MAX_DELTA_PER_RELEASE:
        raise where.error("privacy.delta_per_release",
                          f"must be in [0, {MAX_DELTA_PER_RELEASE:g}) - delta is the chance that the guarantee fails "
                          "outright, so keep it far below 1 / the number of users (1e-6 to 1e-9); "
                          f"got {p.delta_per_release}")
    if not p.epsilon_cap > 0:
        raise where.error("privacy.epsilon_cap", f"must be > 0, got {p.epsilon_cap}")
    if not 0 <= p.delta_cap < 1:
        raise where.error("privacy.delta_cap", f"must be in [0, 1), got {p.delta_cap}")
    if p.epsilon_per_release > p.epsilon_cap:
        raise where.error("privacy.epsilon_per_release",
                          f"({p.epsilon_per_release}) exceeds privacy.epsilon_cap ({p.epsilon_cap}): "
                          "no release could ever run")
    if p.delta_per_release > p.delta_cap:
        raise where.error("privacy.delta_per_release",
                          f"({p.delta_per_release}) exceeds privacy.delta_cap ({p.delta_cap}): no release could ever run")
    if p.noise_kind == NoiseKind.GAUSSIAN and p.delta_per_release == 0:
        raise where.error("privacy.delta_per_release", "must be > 0 with gaussian noise")
    if p.first_period:
        try:
            dt.date.fromisoformat(p.first_period)
        except ValueError:
            raise where.error("privacy.first_period", f"must be a date YYYY-MM-DD (or empty), got {p.first_period!r}") \
                from None
    if p.close_after_hours < 0:
        raise where.error("privacy.close_after_hours", f"must be >= 0, got {p.close_after_hours}")
    if not 1 <= p.max_releases_per_period <= 4096:
        raise where.error("privacy.max_releases_per_period", f"must be in [1, 4096], got {p.max_releases_per_period}")
    if p.release == ReleaseMode.CONTINUAL and p.period == Period.NONE:
        raise where.error("privacy.release", 'continual release needs a period (day, week or month), not "none"')
    if p.release == ReleaseMode.CONTINUAL and p.engine == Engine.PIPELINEDP:
        raise where.error("privacy.engine", 'continual release runs on the "spark" engine only (PipelineDP has no '
                          "tree aggregation); use engine = \"spark\" or release = \"closed\"")


def _validate_metric(m: MetricConfig, privacy: PrivacyConfig, where: _Where) -> None:
    key = f"metrics.{m.name}"
    if m.group_by not in GROUPABLE_COLUMNS:
        raise where.error(f"{key}.group_by",
                          f"must be a Silver column among {', '.join(GROUPABLE_COLUMNS)}, got {m.group_by!r}")
    if not m.output.isidentifier():
        raise where.error(f"{key}.output", f"must be a column name, got {m.output!r}")
    for bound in ("max_partitions_contributed", "max_contributions_per_partition"):
        # the release's bounding holds them as Java ints; the noise grows with them, so a bound
        # that large would bury every statistic anyway
        if not 1 <= getattr(m, bound) <= MAX_CONTRIBUTION_BOUND:
            raise where.error(f"{key}.{bound}", f"must be between 1 and {MAX_CONTRIBUTION_BOUND}, got {getattr(m, bound)}")
    if not m.share > 0:
        raise where.error(f"{key}.share", f"must be > 0, got {m.share}")
    if m.pre_threshold is not None and m.pre_threshold < 1:
        raise where.error(f"{key}.pre_threshold", f"must be >= 1, got {m.pre_threshold}")
    if m.kind.has_value:
        if m.value not in VALUE_COLUMNS:
            raise where.error(f"{key}.value",
                              f"{m.kind} needs a numeric Silver column among {', '.join(VALUE_COLUMNS)}, got {m.value!r}")
        if m.min_value is None or m.max_value is None:
            raise where.error(f"{key}.min_value", f"{m.kind} needs both min_value and max_value (clamping bounds)")
        if m.min_value > m.max_value:
            raise where.error(f"{key}.min_value", f"({m.min_value}) is greater than max_value ({m.max_value})")
        if m.min_value == m.max_value:
            # PipelineDP refuses a zero sensitivity (a MEAN's spread, a SUM of zeros) only once the
            # release has read Silver; every value clamped to one number is no statistic anyway.
            raise where.error(f"{key}.min_value", f"equals max_value ({m.max_value}): every value would be "
                              "clamped to it; give a range")
    elif m.value is not None or m.min_value is not None or m.max_value is not None:
        raise where.error(f"{key}.value", f"{m.kind} takes no value column or bounds; remove value/min_value/max_value")
    if m.public_partitions is None and privacy.delta_per_release == 0:
        raise where.error(f"{key}.public_partitions",
                          "is missing, so partitions are chosen by DP partition selection, which needs "
                          "privacy.delta_per_release > 0")
