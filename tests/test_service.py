"""The live service (serving/service) on the synthetic shop: contract tests of every endpoint with known answers,
bad requests, auth, logs without customer ids, hot swap under load, and the serving gate across families."""
from __future__ import annotations

import json
import logging
import re
import threading
import time

import numpy as np
import pytest

from tests.service_support import LiveServer, planted_in_train, register, set_champion, text_assets

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def models(shop_data):
    from training.models import ItemKNN, Popularity

    return {"itemknn": ItemKNN().fit(shop_data), "popularity": Popularity().fit(shop_data)}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, models, shop_data, shop_clean):
    """itemknn (item-item ONNX, with the text encoder) and popularity (factor ONNX) bundles of the shop."""
    from serving.serving_gate import bundle_model

    root = tmp_path_factory.mktemp("bundles")
    text = text_assets(shop_data, shop_clean.items, root / "text")
    out = {family: (root / family, bundle_model(model, family, shop_data, shop_clean.items, root / family,
                                                text=text if family == "itemknn" else None))
           for family, model in models.items()}
    # the registry tests upload bundles: one without the 90 MB text encoder keeps them short
    out["itemknn-plain"] = (root / "itemknn-plain", bundle_model(models["itemknn"], "itemknn", shop_data,
                                                                 shop_clean.items, root / "itemknn-plain"))
    return out


def _client(folder, **settings):
    from fastapi.testclient import TestClient

    from serving.service.app import create_app
    from serving.service.champion import ChampionHolder
    from serving.service.settings import ServiceSettings

    holder = ChampionHolder("unused", "cobuy-serving", "champion", folder.parent / "cache",
                            resolve=lambda: "1", fetch=lambda version, dst: folder)
    app = create_app(ServiceSettings(cache_dir=str(folder.parent / "cache"), **settings), holder=holder, poll=False)
    holder.refresh()
    return TestClient(app)


@pytest.fixture(scope="module")
def client(bundles):
    return _client(bundles["itemknn"][0])


def test_related_puts_the_planted_partner_first_with_its_evidence(client, shop, shop_data):
    pairs = planted_in_train(shop, shop_data)
    assert len(pairs) >= 4
    for anchor, partner in pairs:
        body = client.get(f"/items/{anchor}/related", params={"k": 5}).json()
        first = body["items"][0]
        assert first["item_id"] == partner, body
        assert first["evidence"]["co_purchases"] >= 5 and first["evidence"]["lift"] > 5
        assert first["evidence"]["with_item_id"] == anchor
        assert f"{first['evidence']['co_purchases']} baskets" in first["reason"]
        assert body["model"] == {"name": "cobuy-serving", "version": "1", "family": "itemknn", "format": "onnx"}
        assert body["ranked_by"].startswith("score: item-kNN") and body["order"] == "score"
        scores = [r["score"] for r in body["items"]]
        assert scores == sorted(scores, reverse=True)


def test_related_order_follows_the_evidence_when_asked_and_says_so_otherwise(client, shop):
    anchor = shop.planted_pairs[0][0]
    by_score = client.get(f"/items/{anchor}/related", params={"k": 30}).json()["items"]
    for row in by_score:  # rows the baskets do not support say which score put them there
        if row["evidence"]["co_purchases"] == 0:
            assert row["reason"].startswith("Never bought together") and "suggested by item-kNN" in row["reason"]
        elif row["evidence"]["lift"] < 1:
            assert "less often than chance" in row["reason"]
    for order, key in (("co_purchases", "co_purchases"), ("lift", "lift")):
        body = client.get(f"/items/{anchor}/related", params={"k": 30, "order": order}).json()
        values = [r["evidence"][key] for r in body["items"]]
        assert values == sorted(values, reverse=True) and body["order"] == order
        assert all(r["evidence"]["co_purchases"] >= 1 for r in body["items"])
        assert body["ranked_by"].startswith(order)
    floor = client.get(f"/items/{anchor}/related", params={"k": 30, "min_lift": 1.0, "min_co_purchases": 2}).json()
    assert floor["items"] and all(r["evidence"]["lift"] >= 1.0 and r["evidence"]["co_purchases"] >= 2
                                  for r in floor["items"])


def test_basket_completion_folds_in_the_cart_and_applies_filters(client, shop, shop_data, shop_clean):
    (a1, p1), (a2, p2) = planted_in_train(shop, shop_data)[:2]
    body = client.post("/baskets/complete", params={"k": 5}, json={"items": [a1, a2]}).json()
    top = [r["item_id"] for r in body["items"]]
    assert {p1, p2} <= set(top[:3]) and not {a1, a2} & set(top)
    row = next(r for r in body["items"] if r["item_id"] == p1)
    assert row["evidence"]["with_item_id"] == a1 and row["evidence"]["lift"] > 5
    heavy = client.post("/baskets/complete", params={"k": 5}, json={"items": [a1, a2], "quantities": [1, 50]}).json()
    assert heavy["items"][0]["item_id"] == p2  # the quantity weighs the fold-in
    items = shop_clean.items.set_index("item_id")
    category = items.loc[a1, "category"]
    cheap = float(items["price"].median())
    filtered = client.post("/baskets/complete", json={"items": [a1]},
                           params={"k": 10, "category": category, "max_price": cheap, "exclude": f"{p1},SKU00001"}).json()
    assert filtered["items"] and all(r["category"] == category and r["price"] <= cheap for r in filtered["items"])
    assert not {p1, "SKU00001"} & {r["item_id"] for r in filtered["items"]}
    assert filtered["filters_ignored"] == [] if "filters_ignored" in filtered else True
    stock = client.post("/baskets/complete", json={"items": [a1]}, params={"in_stock": "true"}).json()
    assert stock["filters_ignored"] == ["in_stock: the served catalog has no in_stock field"]


def test_user_recommendations_exclude_history_and_fold_in_the_session(client, shop, shop_data):
    anchor, partner = planted_in_train(shop, shop_data)[0]
    a, p = shop_data.item_index([anchor, partner])
    users = np.flatnonzero((shop_data.user_items[:, a].toarray().ravel() == 0)
                           & (shop_data.user_items[:, p].toarray().ravel() == 0))
    user = str(shop_data.user_ids[users[0]])
    plain = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()
    history = set(shop_data.item_ids[shop_data.user_items[users[0]].indices])
    assert plain["history_items"] == len(history) and not history & {r["item_id"] for r in plain["items"]}
    session = client.get(f"/users/{user}/recommendations", params={"k": 10, "recent_items": anchor}).json()
    assert partner not in [r["item_id"] for r in plain["items"]]
    row = next(r for r in session["items"] if r["item_id"] == partner)  # the session's anchor brings its partner
    assert row["evidence"]["with_item_id"] == anchor and "session" in session["ranked_by"]


def test_new_item_title_finds_its_twin_and_the_twins_partner(client, shop, shop_data, shop_clean):
    items = shop_clean.items.set_index("item_id")
    for twin, anchor, partner in shop.twins:
        product = {"title": str(items.loc[twin, "title"]), "category": str(items.loc[twin, "category"]),
                   "brand": str(items.loc[twin, "brand"])}
        listed = client.post("/items/new", json=product, params={"k": 3}).json()
        assert listed["neighbours"][0]["item_id"] == twin  # already in the catalog: itself, similarity ~1
        assert listed["neighbours"][0]["similarity"] > 0.99
        new = client.post("/items/new", json=product, params={"k": 3, "exclude": twin}).json()  # as if not listed
        assert new["neighbours"][0]["item_id"] == anchor, new["neighbours"]
        assert partner in [r["item_id"] for r in new["partners"][:3]], new["partners"]
        row = next(r for r in new["partners"] if r["item_id"] == partner)
        assert row["evidence"]["with_item_id"] == anchor and row["evidence"]["co_purchases"] > 0


@pytest.mark.parametrize("method, path, kwargs, status, words", [
    ("get", "/items/NO-SUCH-SKU/related", {}, 404, ["'NO-SUCH-SKU'"]),
    ("post", "/baskets/complete", {"json": {"items": ["SKU00001", "NOPE-1"]}}, 404, ["'NOPE-1'"]),
    ("get", "/users/no-such-customer/recommendations", {}, 404, ["'no-such-customer'"]),
    ("get", "/users/U00001/recommendations", {"params": {"recent_items": "NOPE-2"}}, 404, ["'NOPE-2'"]),
    ("post", "/baskets/complete", {"json": {"itemz": ["SKU00001"]}}, 422, ["'items'"]),
    ("post", "/baskets/complete", {"json": {"items": "SKU00001,SKU00002"}}, 422, ["'items'"]),
    ("post", "/baskets/complete", {"json": {"items": []}}, 422, ["'items'"]),
    ("post", "/baskets/complete", {"json": {"items": ["SKU00001"], "quantities": [1, 2]}}, 422, ["'quantities'"]),
    ("post", "/baskets/complete", {"json": {"items": ["SKU00001"], "quantities": [-1]}}, 422, ["'quantities'"]),
    ("post", "/baskets/complete", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
     ["invalid request"]),
    ("get", "/items/SKU00001/related", {"params": {"k": 0}}, 422, ["'k'"]),
    ("get", "/items/SKU00001/related", {"params": {"k": 1000}}, 422, ["'k'", "COBUY_SERVE_MAX_K"]),
    ("get", "/items/SKU00001/related", {"params": {"min_price": "cheap"}}, 422, ["'min_price'"]),
    ("get", "/items/SKU00001/related", {"params": {"category": "Spaceships"}}, 422, ["'category'", "Kitchen"]),
    ("post", "/items/new", {"json": {"title": ""}}, 422, ["'title'"]),
    ("post", "/baskets/complete", {"json": {"items": ["SKU00001"] * 101}}, 413, ["101 items", "at most 100"]),
    ("post", "/baskets/complete", {"json": {"items": ["SKU00001"] * 9000}}, 413, ["bytes", "limit"]),
])
def test_bad_requests_get_a_clear_status_naming_the_field_or_id(client, method, path, kwargs, status, words):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert all(w in error for w in words), error


def test_ignore_unknown_answers_from_the_known_cart_items(client, shop):
    body = client.post("/baskets/complete", json={"items": [shop.planted_pairs[0][0], "NEW-TODAY"],
                                                  "ignore_unknown": True}).json()
    assert body["unknown_items"] == ["NEW-TODAY"] and body["items"]


def test_bearer_token_guards_the_api_but_not_the_probes(bundles):
    guarded = _client(bundles["popularity"][0], token="s3cret")
    assert guarded.get("/items/SKU00001/related").status_code == 401
    assert guarded.get("/items/SKU00001/related", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = guarded.get("/items/SKU00001/related", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["model"]["format"] == "onnx"
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/readyz").status_code == 200
    assert guarded.get("/metrics").status_code == 200 and guarded.get("/").status_code == 200
    assert guarded.get("/model").status_code == 401 and guarded.get("/items").status_code == 401


def test_request_logs_are_json_without_customer_ids(client, caplog, shop_data):
    user = str(shop_data.user_ids[3])
    with caplog.at_level(logging.INFO, logger="cobuy.serving"):
        assert client.get(f"/users/{user}/recommendations", params={"recent_items": "SKU00001"}).status_code == 200
        assert client.get("/users/raw-customer-42/recommendations").status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "cobuy.serving"]
    assert len(lines) >= 2 and not any(user in line or "raw-customer-42" in line for line in lines)
    events = [json.loads(line) for line in lines]
    assert {e["endpoint"] for e in events} == {"/users/{user_id}/recommendations"}
    assert sorted(e["status"] for e in events) == [200, 404]


def test_probes_and_metrics(bundles):
    from fastapi.testclient import TestClient

    from serving.service.app import create_app
    from serving.service.champion import ChampionHolder
    from serving.service.settings import ServiceSettings

    folder = bundles["itemknn"][0]
    holder = ChampionHolder("unused", "cobuy-serving", "champion", folder.parent / "cache2",
                            resolve=lambda: None, fetch=lambda v, d: folder)
    client = TestClient(create_app(ServiceSettings(cache_dir=str(folder.parent / "cache2")), holder=holder, poll=False))
    assert client.get("/healthz").status_code == 200
    holder.refresh()  # the alias names no version yet
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "no 'champion' version" in not_ready.json()["reason"]
    assert client.get("/items/SKU00001/related").status_code == 503
    holder.resolve = lambda: "7"
    holder.refresh()
    assert client.get("/readyz").json() == {"status": "ready", "model": "cobuy-serving", "version": "7"}
    for _ in range(3):  # ordering by evidence reads the item's co-purchase vector: kept after the first
        client.get("/items/SKU00001/related", params={"order": "co_purchases"})
    client.get("/items/NOPE/related")
    text = client.get("/metrics").text
    assert 'cobuy_model_info{family="itemknn",format="onnx",name="cobuy-serving",version="7"} 1.0' in text
    assert 'cobuy_requests_total{endpoint="/items/{item_id}/related",status="200"} 3.0' in text
    assert 'cobuy_request_errors_total{endpoint="/items/{item_id}/related",status="404"} 1.0' in text
    assert 'cobuy_request_seconds_bucket{endpoint="/items/{item_id}/related",le="0.5"}' in text
    # 2 hits, or 3 where the vector was made at load for the item's kept list (a small catalog keeps every one)
    assert re.search(r'cobuy_cache_requests_total\{cache="co_purchases",result="hit"\} [23]\.0', text)
    assert 'cobuy_model_reloads_total{result="ok"} 1.0' in text


def test_new_items_follow_the_bundled_partner_policy_and_dead_services_folders_are_swept(bundles, tmp_path, shop,
                                                                                            shop_data, shop_clean,
                                                                                            models):
    import dataclasses
    import os

    from serving.service.champion import ChampionHolder
    from serving.serving_gate import bundle_model

    text_dir = bundles["itemknn"][0] / "text"
    info = json.loads((bundles["itemknn"][0] / "bundle.json").read_text())["text"]
    text = dataclasses.replace(_text_assets_of(text_dir, info), n_twins=3, temperature=0.05, prior_weight=0.5,
                               prior=np.log1p(np.asarray(shop_data.baskets.sum(axis=0)).ravel()))
    bundle_model(models["itemknn"], "itemknn", shop_data, shop_clean.items, tmp_path / "policy", text=text)
    client = _client(tmp_path / "policy")
    body = client.post("/items/new", json={"title": "Hearthware Deluxe Tea Pot"}, params={"k": 3}).json()
    assert "its 3 nearest sold twins" in body["ranked_by"] and "/ 0.05" in body["ranked_by"]
    assert "plus 0.5 x the item's log popularity" in body["ranked_by"] and len(body["partners"]) == 3
    cache = tmp_path / "cache" / "cobuy-serving"
    (cache / "v1.999999999.dead").mkdir(parents=True)
    (cache / f"v1.{os.getpid()}.alive").mkdir()
    ChampionHolder("unused", "cobuy-serving", "champion", tmp_path / "cache").sweep()
    assert sorted(p.name for p in cache.iterdir()) == [f"v1.{os.getpid()}.alive"]


def _text_assets_of(folder, info):
    from serving.serving_gate import TextAssets

    return TextAssets(folder, info["model"], np.load(folder / "embeddings.npy"), info["max_length"])


def test_hybrid_is_served_natively(tmp_path, shop, shop_data, shop_clean, models):
    from serving.serving_gate import bundle_model
    from training.models import MODELS
    from training.models.hybrid import Hybrid

    rules = MODELS["association_rules"](min_support=0.002, min_confidence=0.05).fit(shop_data)
    hybrid = Hybrid(models["itemknn"], rules, np.eye(shop_data.n_items, 8, dtype=np.float32),
                    {"collaborative": 1.0, "association": 0.5}).fit(shop_data)
    info = bundle_model(hybrid, "hybrid", shop_data, shop_clean.items, tmp_path / "hybrid")
    assert info.format == "native" and "ONNX" in info.source["native_because"]
    client = _client(tmp_path / "hybrid")
    anchor, partner = planted_in_train(shop, shop_data)[0]
    related = client.get(f"/items/{anchor}/related", params={"k": 3}).json()
    assert related["model"]["format"] == "native" and related["items"][0]["item_id"] == partner
    cart = client.post("/baskets/complete", json={"items": [anchor]}, params={"k": 3}).json()
    assert partner in [r["item_id"] for r in cart["items"]]
    native = hybrid.score_history(shop_data.user_items[:1])[0]  # the service runs the model's own code
    served = client.app.state.holder.current.scorer.cart_scores(shop_data.user_items[0].indices,
                                                                np.ones(shop_data.user_items[0].nnz, np.float32))
    np.testing.assert_allclose(served, native, rtol=1e-6)


@pytest.fixture(scope="module")
def shop_fit(shop_clean, shop_split, shop_data):
    """The split's fit part on train's user positions, and its validation pairs (as ``interaction_matrices``)."""
    from training.data import build_interaction_data

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"], user_ids=shop_data.user_ids)
    return fit, fit.matrix_for(shop_split.validation)


def test_serving_gate_moves_one_alias_across_families(tmp_path, bundles, shop_data, shop_split, shop_fit):
    from serving.registry import CHAMPION, alias_version, run_gate, download_serving_version
    from serving.serving_gate import bundle_evaluator

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fit, validation = shop_fit
    evaluate = bundle_evaluator(shop_data.user_ids, shop_data.item_ids, fit.user_items, validation)
    decisions = []
    for family in ("popularity", "itemknn", "popularity"):
        register(uri, bundles[family if family != "itemknn" else "itemknn-plain"][0], family)
        decisions.append(run_gate(uri, "cobuy-serving", evaluate, "ndcg@20", 0.0, "pytest", tmp_path / f"g{family}",
                                  fetch=download_serving_version))
    first, second, third = decisions
    assert first.promoted and second.promoted and not third.promoted
    assert second.challenger_value > second.champion_value  # item-kNN beat popularity: one alias, two families
    assert alias_version(uri, "cobuy-serving", CHAMPION) == second.challenger_version == "2"


def test_serving_gate_decides_on_validation_and_reports_test_beside(tmp_path, bundles, models, shop_data,
                                                                    shop_split, shop_fit):
    """Validation pairs made to favour popularity (each customer's most-bought unseen items) while the test split
    favours item-kNN: the gate promotes popularity over an item-kNN champion, because it judges on validation,
    and the test figures (item-kNN ahead) ride beside, not decided on. Judging on test keeps item-kNN."""
    import scipy.sparse as sp

    from serving.registry import run_gate, download_serving_version
    from serving.serving_gate import TEST_PREFIX, BundleScorer, bundle_evaluator
    from training.metrics import evaluate_scores

    fit, _ = shop_fit
    counts = models["popularity"].counts.astype(np.float64)
    rows, cols = [], []
    for u in np.flatnonzero(np.diff(fit.user_items.indptr)):  # every customer with a fit history
        c = counts.copy()
        c[fit.user_items[u].indices] = -1
        best = np.argsort(-c, kind="stable")[:3]
        rows += [u] * len(best)
        cols += best.tolist()
    validation = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=fit.user_items.shape)
    test = shop_data.matrix_for(shop_split.test)
    evaluate = bundle_evaluator(shop_data.user_ids, shop_data.item_ids, fit.user_items, validation,
                                shop_data.user_items, test)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register(uri, bundles["itemknn-plain"][0], "itemknn")
    first = run_gate(uri, "cobuy-serving", evaluate, "ndcg@20", 0.0, "pytest", tmp_path / "g1",
                     fetch=download_serving_version)
    register(uri, bundles["popularity"][0], "popularity")
    second = run_gate(uri, "cobuy-serving", evaluate, "ndcg@20", 0.0, "pytest", tmp_path / "g2",
                      fetch=download_serving_version)
    assert first.promoted and second.promoted and second.champion_version == "1"
    assert second.challenger_value > second.champion_value  # popularity ahead on validation
    on_test = {role: r[f"{TEST_PREFIX}ndcg@20"] for role, r in evaluate.results.items()}
    assert on_test["champion"] > on_test["challenger"]  # item-kNN ahead on test: reported, not decided on
    # the decided figure is the validation one, every customer folded in from the fit part
    folder = bundles["popularity"][0]
    want = evaluate_scores(BundleScorer(folder, shop_data.user_ids, shop_data.item_ids, fit.user_items, True),
                           fit.user_items, validation)["ndcg@20"]
    assert second.challenger_value == pytest.approx(want)


def test_hot_swap_under_load_fails_no_request(tmp_path, bundles, shop):
    """Requests keep flowing while @champion moves from v1 (item-kNN) to v2 (popularity): every answer is a 200,
    the service switches within seconds, and /metrics shows the new version."""
    import httpx

    from serving.service.app import create_app
    from serving.service.settings import ServiceSettings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    v1 = register(uri, bundles["itemknn-plain"][0], "itemknn")
    v2 = register(uri, bundles["popularity"][0], "popularity")
    set_champion(uri, v1)
    app = create_app(ServiceSettings(tracking_uri=uri, cache_dir=str(tmp_path / "cache"), poll_seconds=0.2,
                                     log_level="warning"))
    server = LiveServer(app)
    try:
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        anchor = shop.planted_pairs[0][0]
        seen, failures, stop = [], [], threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                while not stop.is_set():
                    for r in (http.get(f"/items/{anchor}/related", params={"k": 5}),
                              http.post("/baskets/complete", json={"items": [anchor, "SKU00002"]})):
                        (seen if r.status_code == 200 else failures).append(
                            (r.headers.get("x-model-version"), r.status_code, r.text[:200]))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        set_champion(uri, v2)
        moved = time.monotonic()
        while not any(v == f"cobuy-serving/{v2}" for v, *_ in seen[-8:]) and time.monotonic() - moved < 60:
            time.sleep(0.05)
        switch_s = time.monotonic() - moved
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        versions = [v for v, *_ in seen]
        assert not failures, failures[:3]
        assert f"cobuy-serving/{v1}" in versions and versions[-1] == f"cobuy-serving/{v2}"
        assert switch_s < 60
        last_old = max(i for i, v in enumerate(versions) if v == f"cobuy-serving/{v1}")
        assert len(versions) - last_old > 20  # and it stays switched
        metrics = httpx.get(f"{server.url}/metrics").text
        assert f'version="{v2}"' in metrics and f'version="{v1}"' not in metrics
        assert "cobuy_model_version 2.0" in metrics and 'cobuy_model_reloads_total{result="ok"} 2.0' in metrics
        print(f"hot swap: {len(seen)} requests, 0 failed, switched {switch_s:.2f} s after the alias moved")
    finally:
        server.stop()


def test_page_in_headless_chromium(bundles, tmp_path, shop):
    """The page the service serves (no build step): search an item, see what goes with it with evidence and
    reasons, place a new product by its title, and the version answering. Set COBUY_SERVE_SCREENSHOT=path.png to
    keep the screenshot (docs/serving-page.png was made so)."""
    import os
    import shutil

    pytest.importorskip("websockets.sync.client", reason="the websockets package (a dagster-webserver dependency)")
    from tests.test_dagster_ui import HeadlessChromium, chromium_binary

    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium binary on PATH (tests/setup_chromium.sh installs Debian's `chromium`)")
    app = _client(bundles["itemknn"][0]).app
    server = LiveServer(app)
    try:
        browser = HeadlessChromium(binary, tmp_path / "profile", width=1400, height=1700)
    except RuntimeError as exc:
        server.stop()
        pytest.skip(f"chromium could not start here: {exc}")

    def wait_for(expression: str, what: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not browser.js(expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"page never showed {what}: {browser.js('document.body.innerText')[:2000]}")
            time.sleep(0.1)

    anchor, partner = shop.planted_pairs[0]
    titles = dict(zip(shop.tables.items["item_id"], shop.tables.items["title"]))
    try:
        browser.open(server.url + "/")
        wait_for("document.getElementById('model').innerText.includes('cobuy-serving v1')", "the model version")
        wait_for("document.querySelectorAll('#related tr').length > 0", "a related list")
        browser.js(f"const q = document.getElementById('q'); q.value = {json.dumps(titles[anchor])};"
                   "q.dispatchEvent(new Event('input'))")
        wait_for(f"[...document.querySelectorAll('#found li')].some(li => li.dataset.id === '{anchor}')",
                 "the searched item")
        browser.js(f"[...document.querySelectorAll('#found li')].find(li => li.dataset.id === '{anchor}').click()")
        wait_for(f"(document.querySelector('#related tr') || {{innerText: ''}}).innerText.includes("
                 f"{json.dumps(titles[partner])})", "the planted partner first")
        first_row = browser.js("document.querySelector('#related tr').innerText")
        assert "x as often as chance" in first_row and "Ranked by score" in browser.js(
            "document.getElementById('related-ranked').innerText")
        twin = shop.twins[0][0]
        browser.js(f"document.getElementById('new-title').value = {json.dumps(titles[twin])};"
                   "document.getElementById('place').click()")
        wait_for(f"document.getElementById('partners').innerText.includes({json.dumps(titles[partner])})",
                 "the new product's likely partners")
        png = tmp_path / "serving-page.png"
        browser.screenshot(png)
        assert png.stat().st_size > 20_000
        if os.environ.get("COBUY_SERVE_SCREENSHOT"):
            shutil.copyfile(png, os.environ["COBUY_SERVE_SCREENSHOT"])
    finally:
        browser.close()
        server.stop()


def test_help_lists_every_setting_and_the_manifests_probe_readyz():
    import subprocess
    import sys
    from dataclasses import fields
    from pathlib import Path

    import yaml

    from serving.service.settings import HELP, ServiceSettings

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "serving.service", "--help"], capture_output=True, text=True,
                         cwd=root, timeout=60).stdout
    for f in fields(ServiceSettings):
        assert f"--{f.name.replace('_', '-')}" in out and HELP[f.name][0] in out
    assert "serving.service" in (root / "Makefile").read_text().split("\nserve:")[1].split("\n\n")[0]
    deployment, service = yaml.safe_load_all((root / "infra/k8s/serving.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"][:3] == ["python", "-m", "serving.service"]
    assert service["kind"] == "Service" and service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert "EXPOSE 8000" in (root / "infra/docker/Dockerfile").read_text()
    env = ServiceSettings.from_args(["--port", "9001"])
    assert env.port == 9001 and env.token == "" and env.model_name == "cobuy-serving"


def test_related_items_table_says_its_rank_follows_the_score_not_the_evidence(models, shop_data, shop_clean):
    from serving.related import related_items_table

    table = related_items_table(models["itemknn"], shop_data, shop_clean.items, k=20)
    assert (table["ranked_by"] == "score of itemknn (the evidence columns do not order the list)").all()
    for _, rows in table.groupby("item_id"):
        assert rows.sort_values("rank")["score"].is_monotonic_decreasing
    none = table[table["co_purchase_count"] == 0]
    weak = table[(table["co_purchase_count"] > 0) & (table["lift"] < 1)]
    assert len(none) and none["reason"].str.startswith("Never bought together").all()
    assert none["reason"].str.contains("suggested by the itemknn score").all()
    assert weak.empty or weak["reason"].str.contains("less often than chance").all()
    strong = table[table["lift"] >= 1]
    assert strong["reason"].str.contains("as often as chance").all()


def test_blend_is_exported_and_served_from_onnx(tmp_path, shop, shop_data, shop_clean, models):
    """The blend (a weighted sum of item-item models) is one item-item matrix: bundled as ONNX, and the service's
    cart scores equal the native blend's."""
    from serving.serving_gate import bundle_model
    from training.models import EASE
    from training.models.blend import LinearBlend

    blend = LinearBlend.from_fitted([EASE(l2=50.0).fit(shop_data), models["itemknn"]], shop_data, weights=[1.0, 0.5])
    info = bundle_model(blend, "blend", shop_data, shop_clean.items, tmp_path / "blend")
    assert info.format == "onnx" and info.family == "blend"
    client = _client(tmp_path / "blend")
    anchor, partner = planted_in_train(shop, shop_data)[0]
    related = client.get(f"/items/{anchor}/related", params={"k": 3}).json()
    assert related["model"]["family"] == "blend" and related["items"][0]["item_id"] == partner
    assert "a tuned blend of ease and itemknn scores" in related["ranked_by"]
    row = shop_data.user_items[5]
    served = client.app.state.holder.current.scorer.cart_scores(row.indices, np.ones(row.nnz, np.float32))
    np.testing.assert_allclose(served, blend.score_history(row)[0], rtol=1e-4, atol=1e-5)


def test_sparse_top_n_export_is_served_by_its_own_graph(tmp_path, shop, shop_data, shop_clean, models):
    """An item-item family cut to its top-N neighbours (kind item_item_sparse) is served from its export's own graph;
    the served scores equal the native sparse model's."""
    from serving.serving_gate import bundle_model
    from training.models.sparse import SparseItemItem

    sparse = SparseItemItem.from_model(models["itemknn"], 20)
    info = bundle_model(sparse, "itemknn", shop_data, shop_clean.items, tmp_path / "sparse")
    assert info.format == "onnx"
    client = _client(tmp_path / "sparse")
    scorer = client.app.state.holder.current.scorer
    assert type(scorer).__name__ == "ExportGraphScorer" and scorer.kind == "item_item_sparse"
    anchor, partner = planted_in_train(shop, shop_data)[0]
    assert client.get(f"/items/{anchor}/related", params={"k": 3}).json()["items"][0]["item_id"] == partner
    row = shop_data.user_items[5]
    np.testing.assert_allclose(scorer.cart_scores(row.indices, np.ones(row.nnz, np.float32)),
                               sparse.score_history(row)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bundle", ["itemknn-plain", "popularity"])
def test_batch_tables_and_the_live_service_agree_on_the_same_champion(tmp_path, bundles, bundle, shop, shop_data,
                                                                      shop_clean):
    """The batch tables made from a served version (serving.served_tables) give the same top-k as the live
    service on that version: every customer's recommendations, every item's related list (item-kNN; popularity
    cannot relate items and says so)."""
    import pandas as pd

    from serving.served_tables import served_related_items, served_user_recommendations

    client = _client(bundles[bundle][0])
    served = client.app.state.holder.current
    facts, _ = served_user_recommendations(served, shop_data, tmp_path / "recs.parquet", k=10, progress=False)
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    assert facts["users_known_to_model"] == shop_data.n_users and facts["rows"] == len(recs)
    rng = np.random.default_rng(0)
    for user in rng.choice(shop_data.user_ids.astype(str), 25, replace=False):
        live = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()["items"]
        batch = recs[recs["user_id"] == user].sort_values("rank")
        assert batch["item_id"].tolist() == [r["item_id"] for r in live], user
        np.testing.assert_allclose(batch["score"], [r["score"] for r in live], atol=1e-5)
    if bundle == "popularity":
        with pytest.raises(ValueError, match="cannot rank related items"):
            served_related_items(served, shop_data, shop_clean.items, k=10, progress=False)
        return
    related = served_related_items(served, shop_data, shop_clean.items, k=10, progress=False)
    assert (related["model"] == "cobuy-serving v1 (itemknn)").all()
    anchors = [a for a, _ in planted_in_train(shop, shop_data)]
    for item in anchors + list(rng.choice(related["item_id"].unique(), 25, replace=False)):
        live = client.get(f"/items/{item}/related", params={"k": 10}).json()["items"]
        batch = related[related["item_id"] == item].sort_values("rank")
        assert batch["related_item_id"].tolist() == [r["item_id"] for r in live], item
        assert batch["co_purchase_count"].tolist() == [r["evidence"]["co_purchases"] for r in live], item


def test_kept_related_lists_answer_exactly_as_scoring_every_request(bundles, shop_data):
    """Each item's related list is made once and kept (serving.service.related_lists); filtered, cut at any k or
    ordered by evidence, every answer equals the one scored in full on the request (the cache turned off)."""
    from fastapi.testclient import TestClient

    from serving.service.app import create_app
    from serving.service.champion import ChampionHolder
    from serving.service.settings import ServiceSettings

    folder = bundles["itemknn-plain"][0]
    clients = []
    for mb in (64.0, 0.0):
        holder = ChampionHolder("unused", "cobuy-serving", "champion", folder.parent / f"cache-{mb}",
                                resolve=lambda: "1", fetch=lambda version, dst: folder, related_cache_mb=mb)
        app = create_app(ServiceSettings(cache_dir=str(folder.parent / f"cache-{mb}")), holder=holder, poll=False)
        holder.refresh()
        clients.append(TestClient(app))
    kept, scored = clients
    assert kept.app.state.holder.current.related is not None and scored.app.state.holder.current.related is None
    assert kept.get("/model").json()["related_lists_kept"] > 0  # the most bought, made at load
    rng = np.random.default_rng(3)
    counts = np.asarray(shop_data.baskets.sum(axis=0)).ravel()
    items = shop_data.item_ids[rng.choice(np.flatnonzero(counts > 0), 15, replace=False)].astype(str)
    queries = [{"k": 10}, {"k": 1}, {"k": 30}, {"k": 100}, {"k": 5, "category": "Kitchen"},
               {"k": 25, "max_price": 20}, {"k": 8, "min_price": 5, "exclude": ",".join(items[:4])},
               {"k": 5, "order": "lift"}, {"k": 5, "min_co_purchases": 2}]
    for item in items:
        for params in queries:
            a, b = kept.get(f"/items/{item}/related", params=params), scored.get(f"/items/{item}/related",
                                                                                  params=params)
            assert a.status_code == b.status_code == 200, (item, params, a.text)
            assert a.json() == b.json(), (item, params)
    text = kept.get("/metrics").text
    assert 'cobuy_cache_requests_total{cache="related_lists",result="hit"}' in text


def test_hot_routes_answer_exactly_as_the_router(bundles, shop_data):
    """GET /items/{id}/related and POST /baskets/complete taken past FastAPI's router (serving.service.hot_routes)
    answer every request, good or bad, byte for byte as the routes do, and the request log names the endpoint."""
    from fastapi.testclient import TestClient

    from serving.service.app import create_app
    from serving.service.champion import ChampionHolder
    from serving.service.hot_routes import HotRoutes
    from serving.service.settings import ServiceSettings

    folder = bundles["itemknn-plain"][0]
    clients = []
    for fast in (True, False):
        holder = ChampionHolder("unused", "cobuy-serving", "champion", folder.parent / f"cache-hot-{fast}",
                                resolve=lambda: "1", fetch=lambda version, dst: folder)
        app = create_app(ServiceSettings(cache_dir=str(folder.parent / f"cache-hot-{fast}")), holder=holder,
                         poll=False)
        if not fast:
            app.user_middleware = [m for m in app.user_middleware if m.cls is not HotRoutes]
        holder.refresh()
        clients.append(TestClient(app))
    ids = shop_data.item_ids.astype(str)
    cart = {"items": ids[:5].tolist()}
    calls = [("GET", f"/items/{ids[0]}/related", {"params": {"k": 5}}),
             ("GET", f"/items/{ids[3]}/related", {"params": {"k": 3, "category": "Kitchen", "order": "lift"}}),
             ("GET", "/items/NOPE/related", {}), ("GET", f"/items/{ids[0]}/related", {"params": {"k": "x"}}),
             ("GET", f"/items/{ids[0]}/related/", {}),
             ("POST", "/baskets/complete", {"json": cart, "params": {"k": 4, "max_price": 30}}),
             ("POST", "/baskets/complete", {"json": {**cart, "quantities": [1, 2, 1, 1, 3]}}),
             ("POST", "/baskets/complete", {"json": {"items": ["NOPE", ids[1]], "ignore_unknown": True}}),
             ("POST", "/baskets/complete", {"json": {"items": ["NOPE"]}}),
             ("POST", "/baskets/complete", {"json": {"items": []}}),
             ("POST", "/baskets/complete", {"json": {**cart, "quantities": [1]}}),
             ("POST", "/baskets/complete", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
             ("POST", "/baskets/complete", {"content": json.dumps(cart).encode(),
                                            "headers": {"content-type": "text/plain"}})]
    for method, path, kwargs in calls:
        a, b = (c.request(method, path, **kwargs) for c in clients)
        assert (a.status_code, a.content) == (b.status_code, b.content), (method, path, kwargs)
        assert a.headers.get("x-model-version") == b.headers.get("x-model-version")
    text = clients[0].get("/metrics").text
    assert 'cobuy_requests_total{endpoint="/baskets/complete",status="200"} 3.0' in text
    assert 'cobuy_requests_total{endpoint="/items/{item_id}/related",status="404"} 1.0' in text
