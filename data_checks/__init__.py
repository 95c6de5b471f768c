"""Data in: readers for real shop formats, the synthetic shop, cleaning rules, quarantine and
Great Expectations suites. Nothing here imports dagster."""
