"""Scoring of exported graphs with ONNX Runtime on CPU (:class:`OnnxScorer`), apart from the export
itself (:mod:`nadkit.models.export`) so that scoring a saved bundle on ONNX Runtime never imports
torch: rows go to the graph straight from the feature matrix; only window models build their
windows with the torch scoring's batching (the same windows, from entity and time)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nadkit.errors import ConfigError, NadkitError, require
from nadkit.models.base import DetectorData, InputKind

log = logging.getLogger(__name__)

#: names of the graph's inputs (rows read ``x`` only) and of its output
INPUT_NAMES: tuple[str, str] = ("x", "mask")
OUTPUT_NAME = "contributions"
#: the output a scorer adds to a graph: each row's score, the sum of its contributions, so that
#: scoring alone never copies a rows x features matrix out of ONNX Runtime
SCORE_NAME = "score"
#: metadata key of the JSON description stored in the graph
METADATA_KEY = "nadkit"
#: default rows per ONNX Runtime call
DEFAULT_BATCH_SIZE = 8192


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on every platform
        return max(1, os.cpu_count() or 1)


def ort_session(model: str | Path | bytes, *, threads: int) -> Any:
    """An ONNX Runtime session of ``model`` (a path or the graph's bytes) on the CPU provider:
    ``threads`` intra-op threads that sleep rather than spin between runs, one graph run at a time,
    every graph optimisation."""
    ort = require("onnxruntime", "scoring exported models", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # no busy-waiting between graph runs: its threads share the cores with reading, features and
    # explanations, whose work a spinning thread would hold up (1 s less of 7 on 1.2M flows, 2 cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class GraphDescription:
    """What :func:`export_onnx` stored in a graph: model name, input kind, window length (window
    models) and the features it was fitted on."""

    model: str
    input: InputKind
    window: int | None
    feature_names: tuple[str, ...]


class OnnxScorer:
    """Scores :class:`~nadkit.models.base.DetectorData` with an exported graph on ONNX Runtime's CPU
    provider, in batches of ``batch_size`` rows (windows built from entity and time as torch
    scoring builds them). ``threads``: intra-op threads (default: every available core)."""

    def __init__(
        self, model: str | Path | bytes, *, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        self.threads = threads or available_cores()
        self.batch_size = batch_size
        try:
            self.session = ort_session(model, threads=self.threads)
            names = {item.name for item in self.session.get_outputs()}
            if SCORE_NAME not in names and OUTPUT_NAME in names:
                # a graph saved before the score output was written at export: added here
                patched = _with_score_output(model)
                if patched is not model:
                    self.session = ort_session(patched, threads=self.threads)
        except NadkitError:
            raise
        except Exception as error:  # onnxruntime raises its own exception types
            where = "the ONNX graph" if isinstance(model, bytes) else str(model)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise NadkitError(f"{where}: cannot be loaded by ONNX Runtime ({first})") from error
        self.description = self._read_description()
        self.inputs = tuple(item.name for item in self.session.get_inputs())
        self.outputs = tuple(item.name for item in self.session.get_outputs())

    def _read_description(self) -> GraphDescription:
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise NadkitError("the ONNX graph was not written by nadkit (no description in its metadata)")
        try:
            value = json.loads(text)
            window = value.get("window")
            return GraphDescription(
                model=str(value["model"]),
                input="windows" if value["input"] == "windows" else "rows",
                window=None if window is None else int(window),
                feature_names=tuple(str(name) for name in value["features"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise NadkitError(f"the ONNX graph's description is unreadable ({error})") from error

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features the exported detector was fitted on."""
        return self.description.feature_names

    def contributions(self, data: DetectorData, *, native: bool = False) -> np.ndarray:
        """``(rows, features)`` float64 contributions, as the detector's ``contributions`` gives them;
        ``native``: in the graph's own float32 (the same numbers, half the memory, no conversion)."""
        self._check_features(data)
        out = np.empty((len(data), data.width), dtype=np.float32 if native else np.float64)
        for rows, feeds in self._batches(data):
            (values,) = self.session.run([OUTPUT_NAME], feeds)
            _place(out, rows, values)
        return out

    def score(self, data: DetectorData) -> np.ndarray:
        """One float64 score per row: the sum of its contributions, summed inside the graph."""
        self._check_features(data)
        if SCORE_NAME not in self.outputs:
            return self.contributions(data).sum(axis=1)
        out = np.empty(len(data), dtype=np.float64)
        for rows, feeds in self._batches(data):
            (values,) = self.session.run([SCORE_NAME], feeds)
            _place(out, rows, values)
        return out

    def score_and_explain(
        self, data: DetectorData, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores (float64, as :meth:`score`), the rows scoring at least ``threshold`` and their
        float32 contributions, in one pass: each batch's contributions come out with its scores and
        only the rows over the threshold are kept, where asking :meth:`contributions` for those
        rows afterwards would run the network over them a second time."""
        self._check_features(data)
        if SCORE_NAME not in self.outputs:
            contributions = self.contributions(data, native=True)
            scores = contributions.sum(axis=1, dtype=np.float64)
            rows = np.flatnonzero(scores >= threshold)
            return scores, rows, contributions[rows]
        scores = np.empty(len(data), dtype=np.float64)
        kept_rows: list[np.ndarray] = []
        kept: list[np.ndarray] = []
        for rows, feeds in self._batches(data):
            values, contributions = self.session.run([SCORE_NAME, OUTPUT_NAME], feeds)
            _place(scores, rows, values)
            over = np.flatnonzero(scores[rows] >= threshold)
            if len(over):
                kept_rows.append(over + rows.start if isinstance(rows, slice) else np.asarray(rows)[over])
                kept.append(contributions[over])
        if not kept:
            return scores, np.zeros(0, dtype=np.int64), np.zeros((0, data.width), dtype=np.float32)
        return scores, np.concatenate(kept_rows), np.concatenate(kept)

    def _check_features(self, data: DetectorData) -> None:
        if tuple(data.feature_names) != self.feature_names:
            raise ConfigError(
                f"{self.description.model} was fitted on {len(self.feature_names)} features and is "
                f"given {len(data.feature_names)} different ones"
            )

    def _batches(self, data: DetectorData) -> Iterator[tuple[np.ndarray | slice, dict[str, np.ndarray]]]:
        """The graph's feeds batch by batch, with the rows each batch scores: rows straight from the
        feature matrix (no copy where it is float32 and contiguous), windows as torch scoring
        builds them."""
        if self.description.input != "windows":
            features = np.ascontiguousarray(data.features, dtype=np.float32)
            for start in range(0, len(features), self.batch_size):
                stop = min(start + self.batch_size, len(features))
                yield slice(start, stop), {INPUT_NAMES[0]: features[start:stop]}
            return
        from nadkit.models.neural import scoring_batches  # windows are built as torch scoring builds them

        for rows, batch in scoring_batches(data, self.batch_size, window=self.description.window):
            feeds = {INPUT_NAMES[0]: batch.x.numpy()}
            if batch.mask is not None:
                feeds[INPUT_NAMES[1]] = batch.mask.numpy()
            yield rows, feeds


def _place(out: np.ndarray, rows: np.ndarray | slice, values: np.ndarray) -> None:
    """Write a batch's values to its rows of ``out`` (consecutive rows: a plain copy, no scatter)."""
    if isinstance(rows, slice):
        out[rows] = values
    elif len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        out[rows[0] : rows[-1] + 1] = values
    else:
        out[rows] = values


def _with_score_output(model: str | Path | bytes) -> str | Path | bytes:
    """The graph with a ``score`` output beside ``contributions`` (their sum over features), added
    at load so graphs saved before it existed get it too; the graph unchanged where onnx is missing
    or the graph cannot take it."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx ships with onnxruntime in the onnx extra
        return model
    try:
        proto = (
            onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load_model(str(model))
        )
        outputs = [output.name for output in proto.graph.output]
        if SCORE_NAME in outputs or not add_score_output(proto):
            return model
        return proto.SerializeToString()
    except Exception as error:  # a graph onnx cannot edit still scores through its contributions
        log.debug("no score output added to the graph (%s)", error)
        return model


def add_score_output(proto: Any) -> bool:
    """Add to the ONNX ``proto``, in place, a ``score`` output: the sum of ``contributions`` over the
    features, so that scoring copies one number a row out of the graph instead of a row of numbers;
    whether the graph has it now."""
    from onnx import TensorProto, helper

    graph = proto.graph
    outputs = [output.name for output in graph.output]
    if SCORE_NAME in outputs:
        return True
    if OUTPUT_NAME not in outputs:
        return False
    axes = helper.make_tensor("nadkit_score_axes", TensorProto.INT64, [1], [1])
    graph.initializer.append(axes)
    graph.node.append(helper.make_node("ReduceSum", [OUTPUT_NAME, axes.name], [SCORE_NAME], keepdims=0))
    graph.output.append(helper.make_tensor_value_info(SCORE_NAME, TensorProto.FLOAT, ["batch"]))
    return True


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "INPUT_NAMES",
    "METADATA_KEY",
    "OUTPUT_NAME",
    "SCORE_NAME",
    "GraphDescription",
    "OnnxScorer",
    "available_cores",
]
