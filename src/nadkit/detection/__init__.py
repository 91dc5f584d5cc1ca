"""Scoring flows with a bundle: the :class:`~nadkit.detection.detect.Scorer` shared by batch
detection, the service, the live stream and Spark (:mod:`~nadkit.detection.spark`), and the
evaluation of a bundle on labelled flows (:mod:`~nadkit.detection.evaluation`)."""
