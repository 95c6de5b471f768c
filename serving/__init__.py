"""Serving: output tables (related items, recommendations) and artifact storage. No dagster here."""
