"""Reproducible benchmarks behind ``genlab bench``: each module has ``run``, ``format_table``
and ``main``."""
