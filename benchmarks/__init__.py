"""Benchmarks and experiments: each module a command (``python -m benchmarks.<name>``) that imports the library
(``cobuy_files``, ``data_checks``, ``training``, ``serving``, ``orchestration``) and writes JSON to
``benchmarks/results/``. Nothing imports this package (tests may): ``tests/test_layering.py``."""
