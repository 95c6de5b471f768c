"""Splits, the evaluation harness, the model contract and the models. Nothing here imports dagster."""
