"""Alerts once produced: the SQLite store with analyst verdicts (:mod:`~nadkit.alerts.store`)."""
