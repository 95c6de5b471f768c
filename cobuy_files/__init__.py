"""Shared file helpers, the lowest layer (``docs/architecture.md``): atomic writes, result JSON, pickles.

Every other package (``data_checks``, ``training``, ``serving``, ``orchestration``, ``benchmarks``) may import it; it
imports none of them."""
