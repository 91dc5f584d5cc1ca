"""The evaluation report: one self-contained HTML page that says what was evaluated, how well the
scores separate attacks from normal traffic, and where the alerts fall, with every figure also as
its own PNG and the numbers in ``metrics.json``.

* :mod:`~nadkit.pictures.report.data`: :class:`ReportData`, what a report shows, and its
  preparation for the figures;
* :mod:`~nadkit.pictures.report.scores` and :mod:`~nadkit.pictures.report.timeline`: the figures
  of the scores (ROC, precision-recall, distribution per class, timeline);
* :mod:`~nadkit.pictures.report.classes`: the figures per class (confusion matrix, detection
  rates, training curves, flow groups);
* :mod:`~nadkit.pictures.report.document`: :func:`write_report`, the page and its files.
"""

from nadkit.pictures.report.data import ReportData
from nadkit.pictures.report.document import FIGURES, FLOW_GROUPS, write_report
from nadkit.pictures.report.scores import score_figures

__all__ = ["FIGURES", "FLOW_GROUPS", "ReportData", "score_figures", "write_report"]
