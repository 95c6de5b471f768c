-- One database per system on the shared Postgres server (the "dagster" database is created by the image).
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
