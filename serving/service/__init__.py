"""The live service: an HTTP API (FastAPI on uvicorn) answering from MLflow's ``cobuy-serving@champion``.

``bundle``: what one served version holds (model, catalog, histories, text encoder); ``scorers``: the model
behind one interface whatever its family; ``evidence``: co-purchase counts, confidence, lift and the reason
line; ``champion``: loading a version and swapping it while requests run; ``app``: the endpoints.
Run it with ``make serve`` (``python -m serving.service --help`` lists the settings)."""
