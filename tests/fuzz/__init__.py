"""Mutation fuzzing of nadkit's inputs: the generators and checks shared by the tests and
``benchmarks/fuzz.py``."""
