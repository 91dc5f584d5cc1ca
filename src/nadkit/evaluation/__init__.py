"""The evaluation protocol that training and detection share: how labelled flows are split
(:mod:`~nadkit.evaluation.split`), how a threshold is chosen on validation data
(:mod:`~nadkit.evaluation.thresholds`), how scores and alerts are measured
(:mod:`~nadkit.evaluation.metrics`), and whether evaluated rows were seen in training
(:mod:`~nadkit.evaluation.overlap`)."""
