"""Fitting a model: a flow table in, a :class:`~nadkit.training.bundle.ModelBundle` out
(:mod:`~nadkit.training.fit`), and the bundle on disk (:mod:`~nadkit.training.bundle`)."""
