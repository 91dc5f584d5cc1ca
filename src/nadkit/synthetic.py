"""Simulator of a multi-day enterprise network with labelled attacks (being written)."""
