"""Locust users for ``benchmarks.service_load`` (run by locust only: importing locust patches the process with gevent).

``COBUY_LOAD_PAYLOADS``: a JSON file {"items": [item ids], "carts": [[5 item ids], ...]} drawn from the dataset;
``COBUY_LOAD_ENDPOINT``: ``related`` (GET /items/{id}/related?k=10) or ``baskets`` (POST /baskets/complete,
k=10); ``COBUY_LOAD_RATE``: requests per second per simulated user (constant throughput, so the offered load is
users x rate however fast the service answers)."""
import json
import os
import random

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

PAYLOADS = json.loads(open(os.environ["COBUY_LOAD_PAYLOADS"]).read())
ENDPOINT = os.environ.get("COBUY_LOAD_ENDPOINT", "related")
RATE = float(os.environ.get("COBUY_LOAD_RATE", "10"))


class Shopper(FastHttpUser):
    wait_time = constant_throughput(RATE)

    def on_start(self) -> None:
        self.rng = random.Random(hash(id(self)) & 0xFFFF)

    @task
    def ask(self) -> None:
        if ENDPOINT == "related":
            item = self.rng.choice(PAYLOADS["items"])
            self.client.get(f"/items/{item}/related?k=10", name="/items/{item_id}/related")
        else:
            self.client.post("/baskets/complete?k=10", json={"items": self.rng.choice(PAYLOADS["carts"])},
                             name="/baskets/complete")
