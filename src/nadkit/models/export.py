"""Export of fitted detectors to ONNX.

Every detector gives its scoring as a plain ``nn.Module`` (:meth:`Detector.export_module
<nadkit.models.base.Detector.export_module>`): ``forward(x)`` on rows ``(b, d)``, or
``forward(x, mask)`` on windows ``(b, window, d)`` with their ``(b, window)`` boolean mask of real
rows, returning the ``(b, d)`` float32 contributions whose row sums are the scores. The neural
detectors share one (their per-feature errors around the fitted network,
:class:`~nadkit.models.neural_modules.ErrorsModule`); the modules here are the tensor versions of
the two classical baselines (the isolation forest's walk down every tree as
a fixed number of gathers, and ECOD's order-statistic counts as a branch-free binary search); a
detector with its own scoring supplies its own module. Every registered detector exports with the
same call.

:func:`export_onnx` writes the graph (free batch size, ONNX opset :data:`OPSET`) with the model's
name, input kind, window length and feature names in its metadata. It traces with torch's
TorchScript-based exporter (under a second per model) and falls back to the ``torch.export``-based
one (ten seconds or more per model on a small machine); both were checked on every detector. The
TorchScript exporter's time grows with the size of the model's constants: ECOD with its default
100,000 reference quantiles per feature takes about a minute on two cores.

:class:`~nadkit.models.onnx_runtime.OnnxScorer` (kept apart, in a module that does not import torch)
reads a graph and scores a :class:`~nadkit.models.base.DetectorData`
with the batching of torch scoring (the same windows, from entity and time), so both give the same
numbers up to float32 rounding.
"""

from __future__ import annotations

import io
import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nadkit.errors import ConfigError, NadkitError, require
from nadkit.fileio import atomic_path
from nadkit.models.base import Detector, NotFittedError
from nadkit.models.onnx_runtime import INPUT_NAMES, METADATA_KEY, OUTPUT_NAME, add_score_output, ort_session
from nadkit.version import __version__

log = logging.getLogger(__name__)

#: the ONNX operator set the graphs are written with
OPSET = 18
#: rows of the example batch the graph is traced with, and of the batch it is checked on
_TRACE_ROWS, _CHECK_ROWS = 3, 7
#: largest difference accepted between the graph and the module on the check batch
_CHECK_RTOL, _CHECK_ATOL = 1e-3, 1e-4


# ---------------------------------------------------------------------------------------------------
# export modules
# ---------------------------------------------------------------------------------------------------


def _round_down_float32(values: np.ndarray) -> np.ndarray:
    """The largest float32 at most each float64 value, so ``x <= value`` for a float32 ``x`` is
    decided exactly in float32."""
    values = np.asarray(values, dtype=np.float64)
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def tree_depth(left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """Steps from the roots down to the deepest leaf of flattened trees (``-1``: no child)."""
    frontier, depth = np.asarray(roots, dtype=np.int64), 0
    while True:
        inner = frontier[left[frontier] >= 0]
        if len(inner) == 0:
            return depth
        frontier = np.concatenate([left[inner], right[inner]])
        depth += 1


class ForestModule(nn.Module):
    """The isolation forest over flattened trees (see :mod:`nadkit.models.baselines`): every row
    walks every tree for as many steps as the deepest leaf is deep (a leaf leads to itself), then
    the anomaly score ``2 ** (-mean path length / c(max_samples))`` is split over the features in
    proportion to their deviation from the training median in units of the training spread (evenly
    where a row sits at the median on every feature)."""

    def __init__(self, trees: Mapping[str, np.ndarray], median: np.ndarray, spread: np.ndarray) -> None:
        super().__init__()
        left = np.asarray(trees["left"], dtype=np.int64)
        right = np.asarray(trees["right"], dtype=np.int64)
        roots = np.asarray(trees["roots"], dtype=np.int64)
        nodes = np.arange(len(left), dtype=np.int64)
        leaf = left < 0
        self.depth = tree_depth(left, right, roots)
        # children of node n at 2n (left) and 2n + 1 (right); a leaf's children are itself; int32
        # indices: a forest has far fewer than 2 ** 30 nodes
        children = np.stack([np.where(leaf, nodes, left), np.where(leaf, nodes, right)], axis=1)
        self.register_buffer("child", torch.from_numpy(children.reshape(-1).astype(np.int32)))
        self.register_buffer("feature", torch.from_numpy(np.asarray(trees["feature"], dtype=np.int64)))
        self.register_buffer("threshold", torch.from_numpy(_round_down_float32(trees["threshold"])))
        leaf_depth = np.asarray(trees["leaf_depth"], dtype=np.float64)
        self.register_buffer("leaf_depth", torch.from_numpy(leaf_depth.copy()))
        self.register_buffer("roots", torch.from_numpy(roots.astype(np.int32)))
        self.register_buffer("median", torch.from_numpy(np.asarray(median, dtype=np.float64).copy()))
        self.register_buffer("spread", torch.from_numpy(np.asarray(spread, dtype=np.float64).copy()))
        self.rate = math.log(2.0) / float(np.asarray(trees["normaliser"]).reshape(-1)[0])
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, d)`` float32 contributions of rows ``x``."""
        node = self.roots.unsqueeze(0).expand(x.shape[0], -1)
        for _ in range(self.depth):
            value = torch.gather(x, 1, self.feature[node])
            # right unless at most the threshold (NaN goes right, as in the NumPy walk)
            node = self.child[node * 2 + 1 - (value <= self.threshold[node]).int()]
        score = torch.exp(self.leaf_depth[node].sum(dim=1, keepdim=True) * -self.rate)
        deviation = (x.to(torch.float64) - self.median).abs() / self.spread
        total = deviation.sum(dim=1, keepdim=True)
        share = torch.where(total > 0, deviation / total, 1.0 / x.shape[1])
        return (share * score).to(torch.float32)


class TailModule(nn.Module):
    """ECOD's tail terms (see :mod:`nadkit.models.baselines`): per feature, the number of sorted
    reference values at most and below each value, found by a binary search of fixed length over
    the reference padded with ``+inf`` to a power of two, then ``log(m + 1) - log1p(count)`` for
    both tails, the skewness-corrected choice, and the terms of the largest of the three sums."""

    def __init__(self, reference: np.ndarray, skewness: np.ndarray) -> None:
        super().__init__()
        reference = np.asarray(reference, dtype=np.float32)
        features, count = reference.shape
        size = 1 << int(count).bit_length()  # a power of two above count: the search ends inside
        padded = np.full((features, size), np.inf, dtype=np.float32)
        padded[:, :count] = reference
        self.count = int(count)
        self.norm = math.log(count + 1.0)
        self.steps = tuple(size >> shift for shift in range(1, int(size).bit_length()))
        self.register_buffer("reference", torch.from_numpy(padded.reshape(-1)))
        self.register_buffer("offsets", torch.arange(features, dtype=torch.int64) * size)
        self.register_buffer("left_skewed", torch.from_numpy(np.asarray(skewness) < 0))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, d)`` float32 contributions of rows ``x``."""
        # feature-major (d, b): the searches of one feature run together, in one reference column
        values = x.t()
        start = self.offsets.unsqueeze(1).expand(-1, x.shape[0])
        at_most, below = start, start
        for step in self.steps:
            at_most = at_most + (self.reference[at_most + (step - 1)] <= values).long() * step
            below = below + (self.reference[below + (step - 1)] < values).long() * step
        at_most = (at_most - start).clamp(max=self.count).t()
        below = (below - start).t()
        # NaN sorts after every reference value
        missing = torch.isnan(x)
        at_most = torch.where(missing, self.count, at_most)
        below = torch.where(missing, self.count, below)
        left = self.norm - torch.log1p(at_most.to(torch.float64))
        right = self.norm - torch.log1p((self.count - below).to(torch.float64))
        skew = torch.where(self.left_skewed, left, right)
        left_sum = left.sum(dim=1, keepdim=True)
        right_sum = right.sum(dim=1, keepdim=True)
        skew_sum = skew.sum(dim=1, keepdim=True)
        # the first of the largest sums, as argmax picks it
        chosen = torch.where(
            (left_sum >= right_sum) & (left_sum >= skew_sum),
            left,
            torch.where(right_sum >= skew_sum, right, skew),
        )
        return chosen.clamp(min=0.0).to(torch.float32)


# ---------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------


def _window_of(detector: Detector, window: int | None) -> int | None:
    """The window length of the graph's input: None for row detectors."""
    if detector.input != "windows":
        if window is not None:
            raise ConfigError(f"{detector.name} reads single rows; a window length is only for window models")
        return None
    length = window if window is not None else getattr(detector.config, "window", None)
    if not isinstance(length, int) or length < 1:
        raise ConfigError(f"{detector.name} reads windows: give the window length to export with")
    return length


def _example(rows: int, width: int, window: int | None, seed: int) -> tuple[torch.Tensor, ...]:
    """A random batch like the scoring batches: windows are padded on the left, with zero rows."""
    generator = torch.Generator().manual_seed(seed)
    if window is None:
        return (torch.randn(rows, width, generator=generator),)
    real = torch.randint(1, window + 1, (rows,), generator=generator)
    real[0] = window
    mask = torch.arange(window).unsqueeze(0) >= (window - real).unsqueeze(1)
    x = torch.randn(rows, window, width, generator=generator) * mask.unsqueeze(-1)
    return x, mask


def _dynamo_export(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str]) -> Any:
    batch = torch.export.Dim("batch")
    shapes = {name: {0: batch} for name in names}
    program = torch.onnx.export(
        module,
        example,
        dynamo=True,
        input_names=names,
        output_names=[OUTPUT_NAME],
        dynamic_shapes=shapes,
        opset_version=OPSET,
        optimize=True,
        verbose=False,
    )
    if program is None:  # pragma: no cover - the dynamo exporter always returns its program
        raise NadkitError("the exporter returned no graph")
    return program.model_proto


def _torchscript_export(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str]) -> Any:
    onnx = require("onnx", "exporting models to ONNX", "onnx")

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in [*names, OUTPUT_NAME]}
    with warnings.catch_warnings():
        # torch announces this exporter's retirement; "auto" moves on to the dynamo one when it goes
        warnings.simplefilter("ignore", DeprecationWarning)
        # shape checks inside torch's own layers become constants of the graph: the window and
        # feature sizes are fixed, and the check batch confirms the free batch size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # recurrent layers start from a learned state expanded to the batch: no fixed batch size
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1")
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1 can be constant folded")
        torch.onnx.export(
            module,
            example,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    return onnx.load_model_from_string(buffer.getvalue())


def _check(model: bytes, module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str]) -> None:
    """Raise NadkitError unless the graph gives the module's output on ``example``."""
    session = ort_session(model, threads=1)
    feeds = {name: tensor.numpy() for name, tensor in zip(names, example, strict=True)}
    (got,) = session.run([OUTPUT_NAME], feeds)
    with torch.no_grad():
        expected = module(*example).numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=_CHECK_RTOL, atol=_CHECK_ATOL):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else math.inf
        raise NadkitError(f"the exported graph differs from the model (largest difference {worst:.3g})")


#: the exporters :func:`export_onnx` can use, in the order ``"auto"`` tries them
EXPORTERS: dict[str, Callable[[nn.Module, tuple[torch.Tensor, ...], list[str]], Any]] = {
    "torchscript": _torchscript_export,
    "dynamo": _dynamo_export,
}
Exporter = Literal["auto", "torchscript", "dynamo"]


def export_onnx(
    detector: Detector,
    path: str | Path,
    *,
    window: int | None = None,
    overwrite: bool = False,
    exporter: Exporter = "auto",
) -> Path:
    """Write a fitted detector's scoring to ``path`` as an ONNX graph with a free batch size.

    Inputs ``x`` (float32 rows ``(b, d)``, or windows ``(b, window, d)``) and for window models
    ``mask`` (bool ``(b, window)``, True at real rows, padding on the left); output
    ``contributions`` (float32 ``(b, d)``). ``window``: the window length of a window model's graph
    (default: the detector's own). ``exporter``: ``"torchscript"`` (torch's TorchScript-based
    exporter: about a third of a second per model), ``"dynamo"`` (the ``torch.export``-based one:
    seconds per model) or ``"auto"``: the first of them, then the other where it fails. The graph
    is checked against the torch module on a batch of another size than the one it was traced
    with before it is written (atomically; an existing file only with ``overwrite``).
    """
    onnx = require("onnx", "exporting models to ONNX", "onnx")

    if not detector.is_fitted:
        raise NotFittedError(f"{detector.name} is not fitted yet (call fit first)")
    if exporter != "auto" and exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter {exporter!r} (known: auto, {', '.join(EXPORTERS)})")
    path = Path(path)
    if path.exists() and not overwrite:
        raise NadkitError(f"{path}: already exists (use --force to replace it)")
    length = _window_of(detector, window)
    names = list(INPUT_NAMES[: 1 if length is None else 2])
    width = len(detector.feature_names_ or ())
    module = detector.export_module()
    trace = _example(_TRACE_ROWS, width, length, seed=0)
    check = _example(_CHECK_ROWS, width, length, seed=1)
    failures: list[str] = []
    model = None
    for how in EXPORTERS if exporter == "auto" else (exporter,):
        try:
            candidate = EXPORTERS[how](module, trace, names)
            _describe(candidate, detector, length)
            _check(candidate.SerializeToString(), module, check, names)
            candidate = _scored(onnx, candidate)
        except Exception as error:  # any exporter failure moves on to the next exporter
            text = str(error).strip()
            first = text.splitlines()[0] if text else type(error).__name__
            log.info("%s: the %s exporter failed (%s)", detector.name, how, first)
            failures.append(f"{how}: {first}")
            continue
        model = candidate
        log.debug("%s exported with the %s exporter", detector.name, how)
        break
    if model is None:
        raise NadkitError(f"{detector.name} could not be exported to ONNX ({'; '.join(failures)})")
    with atomic_path(path, overwrite=overwrite) as temporary:
        onnx.save_model(model, str(temporary))
    log.info("%s exported to %s", detector.name, path)
    return path


def _scored(onnx: Any, model: Any) -> Any:
    """``model`` with its ``score`` output written into the saved graph (so loading it needs no graph
    edit), where ONNX Runtime loads the result; ``model`` itself otherwise."""
    trial = onnx.ModelProto()
    trial.CopyFrom(model)
    try:
        if add_score_output(trial):
            ort_session(trial.SerializeToString(), threads=1)
            return trial
    except Exception as error:  # the graph still scores through its contributions
        log.debug("the exported graph keeps no score output (%s)", error)
    return model


def _describe(model: Any, detector: Detector, window: int | None) -> None:
    """Store what a scorer needs to know in the graph's metadata."""
    description = {
        "model": detector.name,
        "input": detector.input,
        "window": window,
        "features": list(detector.feature_names_ or ()),
        "nadkit": __version__,
    }
    for entry in list(model.metadata_props):
        if entry.key == METADATA_KEY:
            model.metadata_props.remove(entry)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(description)


__all__ = [
    "EXPORTERS",
    "OPSET",
    "Exporter",
    "ForestModule",
    "TailModule",
    "export_onnx",
    "tree_depth",
]
