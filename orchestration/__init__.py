"""The Dagster layer: assets, checks, jobs and resources. The only package that imports dagster."""
