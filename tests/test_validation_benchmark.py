"""Dataset-sized: Great Expectations deciding on Instacart as published (1,384,617 rows, 49,688-item catalog), with
the Data Docs written; the seconds are printed (``-s``). Run with ``pytest -m benchmark tests/test_validation_benchmark.py``."""
import time

import pytest

from tests.conftest import DATASETS, need


@pytest.mark.benchmark
def test_instacart_clean_and_validate(tmp_path):
    from data_checks.cleaning import clean
    from data_checks.expectations import GxSession, validate_tables
    from data_checks.sources import SourceSpec, read_source

    raw = read_source(SourceSpec("instacart", str(need(DATASETS / "instacart"))))
    session = GxSession(tmp_path / "docs")
    t0 = time.perf_counter()
    result = clean(raw, gx=session)
    t_clean = time.perf_counter() - t0
    report = validate_tables(result.interactions, result.items, raw_interactions=raw.interactions, session=session)
    t_validate = time.perf_counter() - t0 - t_clean
    print(f"instacart: clean {t_clean:.1f} s (row-level suites), table-level suites + Data Docs {t_validate:.1f} s")
    assert len(raw.interactions) == 1_384_617
    # as published: no duplicate (order, product) pair and every product in the catalog: nothing quarantined
    assert len(result.interactions) == 1_384_617 and len(result.quarantine) == 0
    assert report.success and report.suites()["interactions_as_read_rows"]
    assert (tmp_path / "docs" / "index.html").exists()
