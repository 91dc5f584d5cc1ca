"""The contract every feature group follows.

A feature group turns columns of the canonical flow table into named numeric feature columns, as Polars
expressions, so that a whole pipeline runs as one vectorised query (also on a ``LazyFrame``). A group

* has a readable ``name`` (used in logs, in the pipeline configuration and in its saved state);
* declares ``requires``, the columns it cannot do without: where a source lacks one, the pipeline skips
  the group with an INFO note naming the missing columns, and never fakes them; and ``optional``,
  columns it uses when present (an absent one is noted, the group still runs);
* may ``fit`` on a training frame, returning JSON-serialisable state (a vocabulary, the columns it saw);
* turns that state into ``helpers``, intermediate columns several features share (computed once, in
  stages where one helper needs another, named with a leading underscore; groups may declare the
  same helper, under the same name and as the same expression in the same stage, and a pipeline then
  computes it once), and ``expressions``: one expression per feature, aliased to its name: a number
  (any numeric dtype; Float32 where its precision is enough, which halves the memory traffic) or,
  for an indicator, a Boolean (see :func:`flag`).

Groups are plain objects listed explicitly, in order, by :mod:`nadkit.features.pipeline`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

#: The state a group learns at fit; JSON-serialisable (str keys, lists, numbers, text).
State = dict[str, Any]


class FeatureGroup(ABC):
    """A themed set of per-flow features computed by Polars expressions."""

    #: Readable, unique name of the group (``"address"``, ``"port"``, ...).
    name: str = ""
    #: Columns the group cannot work without.
    requires: tuple[str, ...] = ()
    #: Columns the group uses when they are present.
    optional: tuple[str, ...] = ()

    def missing(self, columns: Iterable[str]) -> list[str]:
        """The required columns absent from ``columns`` (empty when the group can run)."""
        have = set(columns)
        return [c for c in self.requires if c not in have]

    def fit(self, frame: pl.DataFrame) -> State:
        """Learn the group's state from a training frame; stateless groups record what is present."""
        return {"columns": present(frame.columns, self.optional)}

    def helpers(self, state: Mapping[str, Any]) -> list[list[pl.Expr]]:
        """Stages of intermediate columns shared by several features (names start with ``_``); each
        stage may use the columns of the stages before it. None by default."""
        return []

    @abstractmethod
    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """One numeric expression per feature, each aliased to the feature's name."""

    def apply(self, frame: pl.DataFrame | pl.LazyFrame, state: Mapping[str, Any]) -> pl.DataFrame:
        """The group's features for ``frame`` (unscaled): a convenience for tests and exploration."""
        lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
        for stage in self.helpers(state):
            lazy = lazy.with_columns(stage)
        return lazy.select(self.expressions(state)).collect()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def present(columns: Iterable[str], wanted: Sequence[str]) -> list[str]:
    """The names of ``wanted`` that are among ``columns``, in ``wanted``'s order."""
    have = set(columns)
    return [c for c in wanted if c in have]


def output_name(expr: pl.Expr) -> str:
    """The column name an expression produces."""
    return expr.meta.output_name()


def root_columns(expr: pl.Expr) -> list[str]:
    """The input columns an expression reads, without duplicates, in first-seen order."""
    return list(dict.fromkeys(expr.meta.root_names()))


def flag(condition: pl.Expr) -> pl.Expr:
    """An indicator of ``condition`` (Boolean, so the pipeline knows it is 0/1 by construction and
    does not scale it); null (unknown) counts as false."""
    return condition.fill_null(False)


def safe_divide(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / max(denominator, 1)``: a ratio of counts that stays finite when the count is 0."""
    return numerator.cast(pl.Float64) / pl.max_horizontal(denominator.cast(pl.Float64), pl.lit(1.0))


__all__ = ["FeatureGroup", "State", "flag", "output_name", "present", "root_columns", "safe_divide"]
