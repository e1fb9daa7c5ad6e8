"""The JVM packages the lakehouse needs, resolved once into a project-local folder.

``make setup`` runs ``python -m lakehouse.jars``: Spark's own Maven resolver (``spark.jars.packages``)
downloads Delta and hadoop-azure from Maven Central into ``.jars/ivy`` and a manifest lists the jar
files. Every later session passes those files as ``spark.jars`` and starts without network. Without a
manifest, sessions fall back to ``spark.jars.packages`` (online) and say so.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pyspark

MANIFEST = "manifest.json"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".jars"


def hadoop_version() -> str:
    """The Hadoop version bundled with pyspark; hadoop-azure must match it exactly."""
    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("hadoop-client-api-*.jar"):
        return jar.stem.removeprefix("hadoop-client-api-")
    raise RuntimeError(f"no hadoop-client-api jar in {jars}: is pyspark installed correctly?")


def required_packages() -> list[str]:
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    delta = importlib.metadata.version("delta-spark")
    return [
        f"io.delta:delta-spark_{spark_minor}_2.13:{delta}",
        f"org.apache.hadoop:hadoop-azure:{hadoop_version()}",
    ]


# Transitive dependencies that pyspark already ships (newer versions, in pyspark/jars). Spark loads
# its own copy first anyway; excluding them keeps one version of each on the classpath and keeps
# dead weight out of every executor.
EXCLUDES = [
    "org.apache.hadoop:hadoop-client-api", "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-hadoop", "org.apache.parquet:parquet-column", "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding", "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-jackson", "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-core", "com.fasterxml.jackson.core:jackson-annotations",
    "org.apache.logging.log4j:log4j-slf4j2-impl", "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core", "org.slf4j:slf4j-api", "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni", "io.airlift:aircompressor", "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims", "commons-logging:commons-logging", "commons-codec:commons-codec",
    "org.apache.httpcomponents:httpclient", "org.apache.httpcomponents:httpcore",
    "com.google.code.findbugs:jsr305", "commons-pool:commons-pool", "org.locationtech.jts:jts-core",
]


def jars_dir() -> Path:
    return Path(os.environ.get("LAKEHOUSE_JARS_DIR", DEFAULT_DIR))


JVM_SOURCES = Path(__file__).with_name("jvm")
JVM_JAR = "lakehouse-jvm.jar"  # our own classes: the Container Apps token provider, the Bronze file check


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(JVM_SOURCES.glob("*.java")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _manifest_key() -> dict:
    return {"packages": required_packages(), "excludes": EXCLUDES, "jvm_sources": _sources_digest()}


def resolved_jars(directory: Path | None = None) -> list[str] | None:
    """Jar paths from the manifest, or None if missing, stale or incomplete."""
    directory = directory or jars_dir()
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    if any(data.get(k) != v for k, v in _manifest_key().items()):
        return None
    jars = [str(directory / rel) for rel in data.get("jars", [])]
    if not jars or not all(Path(j).is_file() for j in jars):
        return None
    return jars


def build_jvm_jar(directory: Path, classpath: list[Path]) -> Path:
    """Compiles lakehouse/jvm/*.java (the Container Apps managed-identity token provider for ABFS,
    the Bronze file check of the ingest) against Spark's and the resolved jars. Needs a JDK."""
    javac = shutil.which("javac")
    if javac is None:
        raise RuntimeError("no javac: dp-lakehouse compiles a few classes of its own (lakehouse/jvm) and needs a "
                           "JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless), not only a JRE")
    pyspark_jars = Path(pyspark.__file__).parent / "jars"
    with tempfile.TemporaryDirectory() as classes:
        subprocess.run([javac, "--release", "17", "-nowarn", "-d", classes,
                        "-cp", os.pathsep.join([str(pyspark_jars / "*"), *map(str, classpath)]),
                        *map(str, sorted(JVM_SOURCES.glob("*.java")))], check=True)
        jar = directory / JVM_JAR
        with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as zf:  # a jar is a zip with a manifest
            zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: dp-lakehouse\n")
            for path in sorted(Path(classes).rglob("*.class")):
                zf.write(path, path.relative_to(classes).as_posix())
    return jar


def resolve(directory: Path) -> list[str]:
    """Resolves the packages with Spark's resolver and writes the manifest."""
    from pyspark.sql import SparkSession

    directory = directory.resolve()
    ivy = directory / "ivy"
    packages = required_packages()
    print(f"resolving {', '.join(packages)} from Maven Central into {ivy} (about a minute the first time) ...",
          file=sys.stderr)
    from pyspark import SparkConf, SparkContext

    from lakehouse import jvm_process
    jvm_process.bind_loopback_if_local("local[1]")
    conf = (SparkConf().setMaster("local[1]").setAppName("lakehouse-resolve-jars")
            .set("spark.jars.packages", ",".join(packages)).set("spark.jars.ivy", str(ivy))
            .set("spark.jars.excludes", ",".join(EXCLUDES)).set("spark.ui.enabled", "false")
            .set("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile=file:{jvm_process.LOG4J}"))
    SparkContext._ensure_initialized(gateway=jvm_process.launch(conf))  # Ivy's chatter goes to the log only
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        listed = spark.sparkContext.getConf().get("spark.jars", "")
    finally:
        spark.stop()
    jars = [Path(j.removeprefix("file://").removeprefix("file:")) for j in listed.split(",") if j]
    if not jars:
        raise RuntimeError("Spark resolved no jars; see the Ivy output above")
    jars.append(build_jvm_jar(directory, jars))
    rel = [str(j.resolve().relative_to(directory)) for j in jars]
    (directory / MANIFEST).write_text(json.dumps({**_manifest_key(), "jars": rel}, indent=2) + "\n")
    print(f"{len(rel)} jars ready in {ivy / 'jars'}", file=sys.stderr)
    return [str(j) for j in jars]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DIR, help="folder for the Ivy cache and manifest")
    parser.add_argument("--force", action="store_true", help="resolve again even if the manifest is current")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    if not args.force and resolved_jars(args.dest):
        print(f"jars already resolved in {args.dest}", file=sys.stderr)
        return 0
    resolve(args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
