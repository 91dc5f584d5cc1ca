"""What the spark engine needs and the session it runs in: the pyspark and Java checks, the Spark
session (:func:`spark_session`), the bundle shipped to the executors (:func:`ship_bundle`), and Spark
failures turned into one-line nadkit errors (an error raised on an executor keeps its type)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nadkit.errors import (
    BundleError,
    ConfigError,
    FormatError,
    MissingDependencyError,
    NadkitError,
    SchemaError,
)
from nadkit.features.incremental import OutOfOrderError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession


#: a partition's Arrow record batches, as ``mapInArrow`` hands them over and takes them back
Batches = Iterator["pa.RecordBatch"]

#: the master used when none is given (and the process was not started by spark-submit)
DEFAULT_MASTER = "local[*]"
#: the oldest Java the pinned Spark runs on
MIN_JAVA = 17

_ERROR_MARK = "nadkit-error::"
_ERRORS: dict[str, type[NadkitError]] = {
    cls.__name__: cls
    for cls in (NadkitError, SchemaError, FormatError, ConfigError, BundleError, OutOfOrderError)
}


def _java_binary() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java")


def java_version(java: str) -> int | None:
    """The major version of the Java runtime ``java`` (8 for ``1.8.0_...``); None when unknown."""
    try:
        completed = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr + completed.stdout)
    if match is None:
        return None
    major = int(match[1])
    return int(match[2]) if major == 1 and match[2] else major


def check_requirements() -> None:
    """:class:`MissingDependencyError` unless pyspark imports and a Java runtime of at least
    :data:`MIN_JAVA` is found (``$JAVA_HOME/bin/java``, else ``java`` on the ``PATH``)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "the spark engine needs pyspark (pip install 'nadkit[spark]') and Java 17 or newer"
        ) from None
    java = _java_binary()
    if java is None:
        raise MissingDependencyError(
            "the spark engine needs Java 17 or newer, and none was found "
            "(install openjdk-17-jre-headless or set JAVA_HOME)"
        )
    version = java_version(java)
    if version is None:
        raise MissingDependencyError(f"{java}: cannot tell its Java version (the spark engine needs 17+)")
    if version < MIN_JAVA:
        raise MissingDependencyError(f"{java}: Java {version} found; the spark engine needs Java 17 or newer")


def _is_uri(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def parse_conf(items: Iterable[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` texts (``--conf``) as a mapping; :class:`ConfigError` on anything else."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.executor.memory=8g")
        out[key.strip()] = value.strip()
    return out


def spark_session(
    master: str | None = None, conf: Mapping[str, str] | None = None, *, app_name: str = "nadkit"
) -> SparkSession:
    """A Spark session for nadkit's jobs (an active one is reused, with its settings).

    ``master``: ``local[*]`` when None, unless the process was started by ``spark-submit``, whose
    master then applies. The web UI is off, logs are quiet and times are UTC; a local master binds
    to 127.0.0.1 and runs its Python workers on this interpreter. ``conf`` overrides any of that.
    """
    check_requirements()
    from pyspark.sql import SparkSession

    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    chosen = master or (None if submitted else DEFAULT_MASTER)
    settings: dict[str, str] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "50000",
    }
    user = dict(conf or {})
    threads = user.get("spark.task.cpus", "1")
    for variable in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS"):
        settings[f"spark.executorEnv.{variable}"] = threads
    if chosen is not None and _is_local(chosen):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings["spark.driver.host"] = "127.0.0.1"
        settings["spark.driver.bindAddress"] = "127.0.0.1"
        # local Python workers run on this interpreter (where nadkit is installed)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # the driver's JVM logs errors only (Spark's default profile prints start-up notes and warnings)
    java_options = f"-Dlog4j2.configurationFile={_log_config().as_uri()}"
    settings["spark.driver.extraJavaOptions"] = " ".join(
        part for part in (java_options, user.pop("spark.driver.extraJavaOptions", "")) if part
    )
    settings.update(user)
    builder = SparkSession.builder.appName(app_name)
    if chosen is not None:
        builder = builder.master(chosen)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as error:
        raise NadkitError(f"Spark did not start: {_first_line(error)}") from error


_LOG_CONFIG = """\
rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
logger.submit.name = org.apache.spark.deploy.SparkSubmit
logger.submit.level = error
"""


def _log_config() -> Path:
    """A log4j2 configuration for the driver: errors only, on standard error."""
    path = _staging() / "log4j2.properties"
    if not path.exists():
        path.write_text(_LOG_CONFIG)
    return path


def _first_line(error: BaseException) -> str:
    for line in str(error).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "at ")):
            return line
    return type(error).__name__


@contextlib.contextmanager
def _spark_errors() -> Iterator[None]:
    """Spark failures as one-line nadkit errors; an error nadkit raised on an executor keeps its type
    and message."""
    try:
        yield
    except NadkitError:
        raise
    except Exception as error:
        found = re.search(_ERROR_MARK + r"(\w+)::([^\n]*)", str(error))
        if found is not None:
            raise _ERRORS.get(found[1], NadkitError)(found[2].strip()) from error
        module = type(error).__module__ or ""
        if module.startswith(("pyspark", "py4j")):
            raise NadkitError(f"Spark job failed: {_first_line(error)}") from error
        raise


def _guarded(function: Callable[..., Batches], args: tuple[Any, ...], batches: Batches) -> Batches:
    """Run a partition function on an executor; a nadkit error travels to the driver marked."""
    try:
        yield from function(*args, batches)
    except NadkitError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"{_ERROR_MARK}{type(error).__name__}::{message}") from None


def _task(function: Callable[..., Batches], *args: Any) -> Callable[[Batches], Batches]:
    return functools.partial(_guarded, function, args)


_STAGING: list[Path] = []
_SHIPPED: dict[tuple[str, str], str] = {}


def _staging() -> Path:
    if not _STAGING:
        folder = Path(tempfile.mkdtemp(prefix="nadkit-spark-"))
        atexit.register(shutil.rmtree, folder, True)
        _STAGING.append(folder)
    return _STAGING[0]


def ship_bundle(session: SparkSession, bundle: Path) -> str:
    """Send the bundle directory to every executor (``SparkContext.addFile``); the name executors
    find it under with ``SparkFiles.get``. A bundle is sent once per Spark application."""
    context = session.sparkContext
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()[:16]
    key = (str(context.applicationId), digest)
    if key not in _SHIPPED:
        name = f"nadkit-bundle-{digest}"
        copy = _staging() / name
        if not copy.exists():
            shutil.copytree(bundle, copy)
        context.addFile(str(copy), recursive=True)
        _SHIPPED[key] = name
    return _SHIPPED[key]
