"""Shared set-up of the service tests: serving bundles of the synthetic shop, an MLflow registry holding them,
and a uvicorn server on a free loopback port."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_assets(data, catalog, folder: Path):
    """The packaged text encoder exported to ONNX (fp32; quantising is tested elsewhere) and the shop's
    catalog embedded by it with ONNX Runtime."""
    from orchestration.assets.text import catalog_in_order
    from serving.serving_gate import TextAssets
    from serving.text_onnx import OnnxTextEncoder, export_text_encoder
    from training.text_encoder import default_model_path, item_texts

    export = export_text_encoder(default_model_path(), folder, quantize=False)
    encoder = OnnxTextEncoder(export.fp32, folder, provider="cpu", threads=1)
    return TextAssets(folder, export.fp32.name, encoder.embed(item_texts(catalog_in_order(catalog, data.item_ids))))


def register(uri: str, folder: Path, family: str) -> str:
    from serving.registry import register_serving_version

    version, _ = register_serving_version(uri, "cobuy-serving", "cobuy-test", folder, f"serving-{family}",
                                          {"family": family}, artifact_location=(folder.parent / "mlartifacts").as_uri())
    return version


def set_champion(uri: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("cobuy-serving", "champion", version)


class LiveServer:
    """The app on uvicorn in a thread (real sockets, the alias polled as in production)."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def planted_in_train(shop, data) -> list[tuple[str, str]]:
    """The planted (anchor, partner) pairs whose anchor was bought in the training baskets."""
    counts = np.asarray(data.baskets.sum(axis=0)).ravel()
    idx = {str(i): n for n, i in enumerate(data.item_ids)}
    return [(a, b) for a, b in shop.planted_pairs if counts[idx[a]] >= 5 and counts[idx[b]] >= 5]
