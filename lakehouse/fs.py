"""Small files on any Hadoop file system (local, ABFS) through the Spark JVM: no Spark job each."""

from __future__ import annotations

from pyspark.sql import SparkSession

from lakehouse.jvm_bridge import hadoop_fs, hadoop_path, read_stream_bytes


def exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = hadoop_fs(spark, path)
    return bool(fs.exists(hpath))


def list_names(spark: SparkSession, directory: str) -> list[str]:
    """File names directly in `directory` ([] if it does not exist)."""
    fs, hpath = hadoop_fs(spark, directory)
    if not fs.exists(hpath):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(hpath))


def read_text(spark: SparkSession, path: str) -> str:
    fs, hpath = hadoop_fs(spark, path)
    stream = fs.open(hpath)
    try:
        return read_stream_bytes(spark, stream).decode("utf-8")
    finally:
        stream.close()


def write_text_atomically(spark: SparkSession, path: str, text: str) -> None:
    """Writes a hidden temporary file, then renames it: readers see the whole file or none."""
    fs, hpath = hadoop_fs(spark, path)
    tmp = hadoop_path(spark, hpath.getParent(), f".{hpath.getName()}.tmp")
    stream = fs.create(tmp, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    if not fs.rename(tmp, hpath):
        fs.delete(tmp, False)
        raise OSError(f"could not rename {tmp} to {path} (does it exist already?)")


def delete(spark: SparkSession, path: str) -> None:
    fs, hpath = hadoop_fs(spark, path)
    fs.delete(hpath, False)


class SparkFiles:
    """lakehouse.files.Files on any Hadoop file system, through this session's JVM."""

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, path: str) -> bool:
        return exists(self.spark, path)

    def list_names(self, directory: str) -> list[str]:
        return list_names(self.spark, directory)

    def read_text(self, path: str) -> str:
        return read_text(self.spark, path)
