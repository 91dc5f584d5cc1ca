"""Pictures of flows and detections, drawn from the tables they are given.

* :func:`draw_groups` / :func:`render_groups` (:mod:`~nadkit.pictures.groups`): flows grouped by a
  key, one column per group, time running down, each cell coloured by class or score, as a PNG;
  :func:`groups_html` (:mod:`~nadkit.pictures.page`): the same picture as a self-contained page
  that zooms and pans;
* :func:`plot_alert` (:mod:`~nadkit.pictures.alert`): the features behind one alert's score;
* :func:`write_report` (:mod:`nadkit.pictures.report`): the evaluation report;
* :func:`write_groups`, :func:`write_alert` and :func:`load_alert` (:mod:`~nadkit.pictures.files`):
  pictures written to files, and the alert record read back from an alerts file;
* :mod:`~nadkit.pictures.palette`: the class colours every picture shares;
  :mod:`~nadkit.pictures.options`: the picture options, read and checked.

Reading flow files and scoring flows with a model are the callers' part: a picture module draws the
table it is given.
"""

from nadkit.pictures.alert import plot_alert
from nadkit.pictures.files import load_alert, write_alert, write_groups
from nadkit.pictures.grouping import predicted_classes
from nadkit.pictures.groups import GroupsPicture, draw_groups, render_groups
from nadkit.pictures.options import (
    COLOURINGS,
    DEFAULT_BY,
    KEY_COLUMNS,
    ORDERS,
    check_options,
    key_column,
    parse_by,
    parse_colourings,
    parse_duration,
)
from nadkit.pictures.page import groups_html
from nadkit.pictures.palette import (
    ALERT,
    ALERT_COLOUR,
    ATTACK_COLOURS,
    NORMAL_COLOUR,
    NORMAL_TINT,
    class_colours,
    spans_decades,
)
from nadkit.pictures.report import FIGURES, FLOW_GROUPS, ReportData, score_figures, write_report

__all__ = [
    "ALERT",
    "ALERT_COLOUR",
    "ATTACK_COLOURS",
    "COLOURINGS",
    "DEFAULT_BY",
    "FIGURES",
    "FLOW_GROUPS",
    "KEY_COLUMNS",
    "NORMAL_COLOUR",
    "NORMAL_TINT",
    "ORDERS",
    "GroupsPicture",
    "ReportData",
    "check_options",
    "class_colours",
    "draw_groups",
    "groups_html",
    "key_column",
    "load_alert",
    "parse_by",
    "parse_colourings",
    "parse_duration",
    "plot_alert",
    "predicted_classes",
    "render_groups",
    "score_figures",
    "spans_decades",
    "write_alert",
    "write_groups",
    "write_report",
]
