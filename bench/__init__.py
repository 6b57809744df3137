"""Benchmarks: ``make bench`` (``python -m bench``) runs every one and prints its figures.

Each benchmark module exposes ``main(argv)``, builds its own fresh database and prints a
table; nothing here asserts timings (see docs: timings are never asserted in tests).
"""
