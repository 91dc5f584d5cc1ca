"""The output of a Spark detection: written beside the target through Hadoop's file system API and
renamed into place when complete (:class:`_Store`), and the records and alerts read back from it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nadkit.detection.spark.session import _is_uri
from nadkit.errors import NadkitError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class _Store:
    """The output location through Hadoop's file system API (local paths, HDFS, S3, ...): written beside
    the target, renamed into place when complete."""

    def __init__(self, session: SparkSession, target: str) -> None:
        context = session.sparkContext
        self._jvm = context._jvm  # type: ignore[attr-defined]
        self._conf = context._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        self.uri = target if _is_uri(target) else "file://" + str(Path(target).absolute())
        self.path = self._path(self.uri)
        fs = self.path.getFileSystem(self._conf)
        checksummed = self._jvm.java.lang.Class.forName("org.apache.hadoop.fs.ChecksumFileSystem")
        # the raw file system of a checksummed one (local files) also lists its .crc files
        self.fs = fs.getRawFileSystem() if checksummed.isInstance(fs) else fs

    def _path(self, text: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(text)

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def sibling(self, suffix: str) -> str:
        parent = self.path.getParent()
        return str(self._path_in(parent, f".{self.path.getName()}.{uuid.uuid4().hex[:12]}.{suffix}"))

    def _path_in(self, parent: Any, name: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(parent, name)

    def remove(self, location: str) -> None:
        path = self._path(location)
        if self.fs.exists(path):
            self.fs.delete(path, True)

    def tidy(self, folder: str) -> list[str]:
        """Drop the job's marker and checksum files from ``folder``; the data files' names."""
        names = []
        for status in self.fs.listStatus(self._path(folder)):
            path = status.getPath()
            name = str(path.getName())
            if name == "_SUCCESS" or (name.startswith(".") and name.endswith(".crc")):
                self.fs.delete(path, False)
            else:
                names.append(name)
        return sorted(names)

    def commit(self, written: str, *, overwrite: bool) -> None:
        """Rename ``written`` onto the target (replacing it only with ``overwrite``)."""
        source = self._path(written)
        backup = None
        if self.fs.exists(self.path):
            if not overwrite:
                raise NadkitError(f"{self.uri}: already exists (use --force to replace it)")
            backup = self._path(self.sibling("old"))
            if not self.fs.rename(self.path, backup):
                raise NadkitError(f"{self.uri}: could not be moved aside to be replaced")
        if not self.fs.rename(source, self.path):
            if backup is not None:
                self.fs.rename(backup, self.path)
            raise NadkitError(f"{self.uri}: could not be written (rename from {written} failed)")
        if backup is not None:
            self.fs.delete(backup, True)

    def commit_single(self, folder: str, *, overwrite: bool) -> None:
        """Move the one data file Spark wrote into ``folder`` onto the target; remove ``folder``."""
        names = self.tidy(folder)
        if len(names) > 1:
            raise NadkitError(f"{folder}: expected one data file, found {len(names)}")
        if names:
            written = str(self._path_in(self._path(folder), names[0]))
        else:  # an empty result: an empty file
            written = str(self._path_in(self._path(folder), "empty"))
            self.fs.create(self._path(written)).close()
        self.commit(written, overwrite=overwrite)
        self.remove(folder)


def _summary(session: SparkSession, store: _Store, folder: str, kind: str) -> tuple[int, int, dict[str, int]]:
    """Records written, alerts among them, and alerts by class, read back from the written output."""
    from pyspark.sql import functions as F

    if not [name for name in store.tidy(folder) if not name.startswith(("_", "."))]:
        return 0, 0, {}
    if kind == "parquet":
        written = session.read.parquet(folder)
        alert = F.col("alert")
    elif kind == "jsonl":
        written = session.read.schema("alert boolean, class string").json(folder)
        alert = F.col("alert")
    else:
        written = session.read.option("header", "true").csv(folder)
        alert = F.lower(F.col("alert")) == F.lit("true")
    rows = written.select(alert.alias("alert"), F.col("class")).groupBy("alert", "class").count().collect()
    total = sum(int(r["count"]) for r in rows)
    by_class: dict[str, int] = {}
    for r in rows:
        if r["alert"]:
            name = r["class"] if r["class"] is not None else "anomaly"
            by_class[name] = by_class.get(name, 0) + int(r["count"])
    return total, sum(by_class.values()), by_class
