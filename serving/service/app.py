"""The HTTP API (FastAPI): related items, basket completion, customer recommendations, new items, the page,
health, readiness and metrics. ``create_app(settings)`` builds it; ``python -m serving.service`` runs it.

Every list endpoint takes ``k``, ``category``, ``min_price``/``max_price``, ``in_stock`` and ``exclude`` as query
parameters (POST endpoints too; their bodies hold only the cart or the product). A filter on a catalog field the
served catalog lacks is ignored and named in ``filters_ignored``. Each answer names the version that gave it
(``model``, header ``X-Model-Version``) and what orders the list (``ranked_by``): the model's score unless
``order`` asks for an evidence field; each item carries its evidence and a one-line reason."""
from __future__ import annotations

import hmac
import itertools
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from serving.service.champion import ChampionHolder, Served
from serving.service.evidence import PairEvidence
from serving.service.hot_routes import HotRoutes
from serving.service.metrics import ServiceMetrics
from serving.service.params import ListParams, RelatedParams, UserParams, query
from serving.service.ranking import top_positions
from serving.service.render import Raw, envelope
from serving.service.settings import ServiceSettings

log = logging.getLogger("cobuy.serving")
STATIC = Path(__file__).resolve().parent / "static"


class Cart(BaseModel):
    """A live cart: item ids, optional quantities (same length; each > 0) weighting the fold-in."""

    items: list[str] = Field(min_length=1, description="item ids in the cart")
    quantities: list[float] | None = Field(None, description="one per item, > 0 (default 1 each)")
    ignore_unknown: bool = Field(False, description="answer from the known items instead of 404 on unknown ones")


class NewItem(BaseModel):
    """A product not in the catalog yet (e.g. listed this morning)."""

    title: str = Field(min_length=1, max_length=500)
    category: str | None = Field(None, max_length=200)
    brand: str | None = Field(None, max_length=200)


LIST, LIST_DOC = query(ListParams)
RELATED, RELATED_DOC = query(RelatedParams)
USER, USER_DOC = query(UserParams)


def _error(status: int, message: str, **extra) -> HTTPException:
    return HTTPException(status, detail={"error": message, **extra})


def create_app(settings: ServiceSettings | None = None, holder: ChampionHolder | None = None,
               poll: bool = True) -> FastAPI:
    """The app. ``holder``: the version source (default: MLflow per ``settings``); ``poll``: start polling the
    alias on start-up (tests may call ``holder.refresh()`` themselves)."""
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics()
    holder = holder or ChampionHolder(settings.tracking_uri, settings.model_name, settings.alias,
                                      settings.cache_dir, settings.threads, metrics,
                                      related_cache_mb=settings.related_cache_mb,
                                      related_warm_seconds=settings.related_warm_s)
    holder.metrics = holder.metrics or metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if poll:
            holder.start(settings.poll_seconds)
        yield
        holder.stop()

    app = FastAPI(title="cobuy", version="1", lifespan=lifespan,
                  description="Real-time recommendations with filters, evidence and monitoring. See docs/serving.md.")
    app.state.holder, app.state.metrics, app.state.settings = holder, metrics, settings

    def served() -> Served:
        current = holder.current
        if current is None:
            raise _error(503, f"no model loaded yet: {holder.last_error or 'loading'}")
        return current

    async def list_params(request: Request) -> ListParams:
        return LIST(request)

    def positions(s: Served, ids: list[str], field: str, strict: bool = True) -> tuple[np.ndarray, list[str]]:
        pos = [s.item_index.get(str(i), -1) for i in ids]
        unknown = [i for i, p in zip(ids, pos) if p < 0]
        if unknown and strict:
            raise _error(404, f"unknown item id{'s' if len(unknown) > 1 else ''} in {field}: "
                              + ", ".join(repr(u) for u in unknown[:20])
                              + f" (not in the catalog of {s.name} v{s.version})", unknown=unknown[:100])
        return np.asarray([p for p in pos if p >= 0], np.int64), unknown

    def allowed(s: Served, q: ListParams) -> tuple[np.ndarray | None, list[str]]:
        """(n_items,) bool of the items the filters let through (None: no filter, every item), and the filters
        ignored because the catalog lacks their field."""
        if q.k > settings.max_k:
            raise _error(422, f"field 'k': {q.k} is above the largest k served ({settings.max_k}, "
                              "COBUY_SERVE_MAX_K)", field="k")
        ignored: list[str] = []
        if not q.filtered:
            return None, ignored
        mask = np.ones(len(s.item_ids), bool)
        if q.category is not None:
            if s.categories is None:
                ignored.append("category: the served catalog has no category field")
            elif q.category not in s.category_names:
                raise _error(422, f"field 'category': {q.category!r} is not a category of the served catalog "
                                  f"(known: {', '.join(s.category_names[:30])})", field="category")
            else:
                mask &= s.category_mask(q.category)
        if q.min_price is not None or q.max_price is not None:
            if s.prices is None:
                ignored.append("min_price/max_price: the served catalog has no price field")
            else:
                with np.errstate(invalid="ignore"):
                    if q.min_price is not None:
                        mask &= s.prices >= q.min_price
                    if q.max_price is not None:
                        mask &= s.prices <= q.max_price
        if q.in_stock is not None:
            if s.in_stock is None:
                ignored.append("in_stock: the served catalog has no in_stock field")
            else:
                mask &= s.in_stock == q.in_stock
        if q.exclude:
            pos, _ = positions(s, q.exclude, "exclude", strict=False)
            mask[pos] = False
        return mask, ignored

    top = top_positions  # the served ranking rule, shared with the batch tables (serving.served_tables)

    stage_score, stage_evidence = metrics.stage.labels("score"), metrics.stage.labels("evidence")

    def answer(s: Served, ranked_by: str, order: str, ignored: list[str], **body) -> Response:
        """The JSON answer, assembled from bytes (``serving.service.render``), naming the version that gave it."""
        return Response(envelope(s.render, ranked_by, order, ignored, body), media_type="application/json",
                        headers=s.render.headers)

    def ranked(s: Served, idx: np.ndarray, scores: np.ndarray, evidence: list[PairEvidence], t0: float) -> Raw:
        t1 = time.perf_counter()
        stage_evidence.observe(t1 - t0)
        return s.render.rows(idx, scores, evidence)

    def listed_related(s: Served, item: int, mask: np.ndarray | None, k: int) -> Raw | None:
        """The item's top ``k`` related rows from its kept list (``serving.service.related_lists``) when the list
        answers the request exactly; None when it cannot (no list kept, or too few pass the filters)."""
        if s.related is None:
            return None
        entry = s.related.get(item)
        pos = entry.positions
        chosen = np.arange(min(k, len(pos))) if mask is None else np.flatnonzero(mask[pos])[:k]
        if len(chosen) < k and not entry.complete:
            return None
        made = entry.rows
        deeper = chosen[chosen >= len(made)]  # past the rows made at load: their evidence and JSON now
        ev = dict(zip(deeper.tolist(), s.evidence.pair(item, pos[deeper]))) if len(deeper) else {}
        return Raw(b"[" + b",".join(made[i] if i < len(made) else s.render.row(int(pos[i]), entry.scores[i], ev[i])
                                   for i in chosen.tolist()) + b"]")

    # the hot endpoints read their query themselves: each FastAPI dependency is a resolution of its own per
    # request (docs/serving.md, where the time goes); the bearer token is checked by BearerAuth, before routing
    @app.get("/items/{item_id}/related", summary="Bought together with one item", openapi_extra=RELATED_DOC)
    async def related(item_id: str, request: Request):
        q = RELATED(request)
        order, min_co_purchases, min_lift = q.order, q.min_co_purchases, q.min_lift
        s = served()
        (item,), _ = positions(s, [item_id], "the path")
        item = int(item)
        mask, ignored = allowed(s, q)
        t0 = time.perf_counter()
        if order == "score" and not min_co_purchases and not min_lift:
            listed = listed_related(s, item, mask, q.k)
            if listed is not None:
                stage_score.observe(time.perf_counter() - t0)
                return answer(s, f"score: {s.info.score_meaning} ({s.info.family}); evidence shown, not used to "
                                 "order", "score", ignored, item=Raw(s.render.item(item)), items=listed)
        itself = np.array([item])
        scores = s.scorer.related_scores(item)
        by_evidence = bool(min_co_purchases or min_lift or order != "score")
        if by_evidence:  # the anchor's whole co-purchase vector (cached): evidence filters and orders
            co = s.evidence.co_purchases(int(item))
            counts = s.evidence.counts
            lift = co / max(counts[item], 1) * s.evidence.n_baskets / np.maximum(counts, 1)
            keep = (co >= max(min_co_purchases, 0 if order == "score" else 1)) & (lift >= min_lift)
            mask = keep if mask is None else mask & keep
        t1 = time.perf_counter()
        stage_score.observe(t1 - t0)
        if order == "score":
            idx = top(scores, mask, q.k, positive=True, never=itself)
            ranked_by = f"score: {s.info.score_meaning} ({s.info.family}); evidence shown, not used to order"
        else:
            key = co.astype(np.float64) if order == "co_purchases" else lift
            finite = np.where(np.isfinite(scores), scores, np.nanmin(scores[np.isfinite(scores)], initial=0.0))
            tie = finite - finite.min()  # the model's score breaks ties, below one unit of the key
            idx = top(key + 0.5 * tie / max(tie.max(), 1e-12) * (1e-6 if order == "lift" else 1.0), mask, q.k,
                      never=itself)
            ranked_by = (f"{order}: the baskets' evidence with {s.titles[item]!r}; ties broken by the model's score")
        ev = ([s.evidence._evidence(item, int(p), int(co[p])) for p in idx] if by_evidence
              else s.evidence.pair(item, idx))
        rows = ranked(s, idx, scores, ev, t1)
        return answer(s, ranked_by, order, ignored, item=Raw(s.render.item(item)), items=rows)

    @app.post("/baskets/complete", summary="Items to add to a live cart", openapi_extra=LIST_DOC)
    async def complete(cart: Cart, request: Request):
        q = LIST(request)
        s = served()
        if len(cart.items) > settings.max_cart_items:
            raise _error(413, f"the cart holds {len(cart.items)} items; at most {settings.max_cart_items} are scored "
                              "(COBUY_SERVE_MAX_CART_ITEMS)", field="items")
        if cart.quantities is not None and len(cart.quantities) != len(cart.items):
            raise _error(422, f"field 'quantities': {len(cart.quantities)} values for {len(cart.items)} items",
                         field="quantities")
        if cart.quantities is not None and min(cart.quantities) <= 0:
            raise _error(422, "field 'quantities': every quantity must be > 0", field="quantities")
        items, unknown = positions(s, cart.items, "items", strict=not cart.ignore_unknown)
        if not len(items):
            raise _error(404, "none of the cart's items is in the served catalog", unknown=unknown[:100])
        known = [i for i in cart.items if str(i) in s.item_index]
        weights = (np.ones(len(items), np.float32) if cart.quantities is None else
                   np.asarray([w for i, w in zip(cart.items, cart.quantities) if str(i) in s.item_index], np.float32))
        mask, ignored = allowed(s, q)
        t0 = time.perf_counter()
        idx, scores = s.scorer.cart_top(items, weights, mask, q.k, never=items)  # top_positions, as `top`
        t1 = time.perf_counter()
        stage_score.observe(t1 - t0)
        rows = ranked(s, idx, scores, s.evidence.best_anchor(items, idx), t1)
        body = {"cart": known, "items": rows}
        if unknown:
            body["unknown_items"] = unknown[:100]
        return answer(s, f"score: {s.info.score_meaning} ({s.info.family}), the cart folded in; evidence: the "
                           "cart item each was bought with most", "score", ignored, **body)

    @app.get("/users/{user_id}/recommendations", summary="For a known (pseudonymised) customer",
             openapi_extra=USER_DOC)
    async def for_user(user_id: str, request: Request):
        q = USER(request)
        recent, session_weight = q.recent_items, q.session_weight
        s = served()
        user = s.user_index.get(user_id)
        if user is None:
            raise _error(404, f"unknown customer id {user_id!r} (not among the {len(s.user_index):,} pseudonymised "
                              f"customers of {s.name} v{s.version})")
        extra, _ = positions(s, recent, "recent_items")
        history = s.user_items[user].indices
        mask, ignored = allowed(s, q)
        t0 = time.perf_counter()
        per_item = session_weight * max(len(history), 1) / max(len(extra), 1)
        scores = s.scorer.user_scores(int(user), extra, np.full(len(extra), per_item, np.float32))
        anchors = np.concatenate([extra, history]).astype(np.int64)
        idx = top(scores, mask, q.k, never=anchors)
        t1 = time.perf_counter()
        stage_score.observe(t1 - t0)
        rows = ranked(s, idx, scores, s.evidence.best_anchor(anchors, idx), t1)
        return answer(s, f"score: {s.info.score_meaning} ({s.info.family}) for this customer"
                           + (", with the session's items folded in" if len(extra) else "")
                           + "; evidence: the customer's item each was bought with most", "score", ignored,
                        history_items=int(len(history)), items=rows)

    @app.post("/items/new", summary="Where a new product belongs, from its title",
              openapi_extra=LIST_DOC)
    async def new_item(product: NewItem, q: ListParams = Depends(list_params)):
        s = served()
        if s.text is None:
            raise _error(503, f"{s.name} v{s.version} was registered without a text encoder; new items cannot be "
                              "placed (register the serving version with the text encoder export)")
        mask, ignored = allowed(s, q)
        text = product.title.strip()
        for name in ("category", "brand"):  # the catalog texts' format (training.text_encoder.item_texts)
            value = getattr(product, name)
            if value:
                text += f" | {name}: {value}"
        t0 = time.perf_counter()
        sims = s.text.embeddings @ s.text.embed(text)
        near = top(sims, mask, q.k)
        counts, policy = s.evidence.counts, s.text
        sold = np.flatnonzero(counts > 0)
        m = min(policy.n_twins, len(sold))
        twins = sold[np.argsort(-sims[sold], kind="stable")[:m]] if m else np.zeros(0, np.int64)
        w = np.exp((sims[twins] - (sims[twins].max() if m else 0.0)) / policy.temperature)
        w = w / max(w.sum(), 1e-300)
        shares = np.zeros((len(twins), len(s.item_ids)), np.float32)
        for r, t in enumerate(twins):
            co = s.evidence.co_purchases(int(t)).astype(np.float32)
            co[t] = 0.0
            shares[r] = co / max(counts[t], 1)
        partner_scores = (w[:, None] * shares).sum(axis=0) if m else np.zeros(len(s.item_ids), np.float32)
        if policy.prior is not None and policy.prior_weight:
            partner_scores = partner_scores + np.float32(policy.prior_weight) * policy.prior
        partners = top(partner_scores, mask, q.k, positive=policy.prior is None or not policy.prior_weight)
        t1 = time.perf_counter()
        stage_score.observe(t1 - t0)
        render = s.render
        neighbours = [{**render.record(int(p)), "similarity": round(float(sims[p]), 4)} for p in near]
        rows = []
        for p in partners:
            r = int(np.argmax(w * shares[:, p])) if m else -1
            t = int(twins[r])
            ev = s.evidence._evidence(t, int(p), int(s.evidence.co_purchases(t)[p]))
            rows.append({**render.record(int(p)), "score": round(float(partner_scores[p]), 6),
                         "evidence": {**render.evidence(ev), "twin_similarity": round(float(sims[t]), 4)},
                         "reason": (f"Its nearest catalog twin {s.titles[t]!r} (text similarity {sims[t]:.2f}) was "
                                    f"bought with it in {ev.co_purchases} of {counts[t]} baskets.")})
        stage_evidence.observe(time.perf_counter() - t1)
        prior = (f", plus {policy.prior_weight:g} x the item's log popularity" if policy.prior is not None
                 and policy.prior_weight else "")
        return answer(s, "neighbours: cosine similarity of the text encoder's embeddings; partners: the share "
                           f"of its {m} nearest sold twins' baskets holding the item, twins weighted by "
                           f"softmax(similarity / {policy.temperature:g}){prior}", "score", ignored, text=text,
                        neighbours=neighbours, partners=rows)

    @app.get("/items", summary="Search the catalog (for the page)")
    async def search(q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=200),
                     category: str | None = None):
        s = served()
        counts = s.evidence.counts
        mask = np.ones(len(s.item_ids), bool)
        if q:
            needle = q.lower()
            mask &= np.fromiter((needle in t.lower() or needle == i.lower() for t, i in zip(s.titles, s.item_ids)),
                                bool, len(s.item_ids))
        if category and s.categories is not None:
            mask &= s.category_mask(category)
        idx = top(counts.astype(np.float64) + 1.0, mask, limit)
        return answer(s, "baskets holding the item", "baskets", [],
                      items=[{**s.render.record(int(p)), "baskets": int(counts[p])} for p in idx],
                        categories=s.category_names)

    @app.get("/model", summary="Which model serves")
    async def model():
        s = served()
        return JSONResponse(s.describe(), headers={"X-Model-Version": f"{s.name}/{s.version}"})

    @app.get("/healthz", summary="The process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="A model is loaded")
    async def readyz():
        current = holder.current
        if current is None:
            return JSONResponse({"status": "not ready", "reason": holder.last_error or "loading"}, status_code=503)
        return {"status": "ready", "model": current.name, "version": current.version}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
            problems.append({"field": ".".join(loc) or "body", "in": str(e.get("loc", ["?"])[0]),
                             "problem": e.get("msg", "")})
        text = "; ".join(f"field '{p['field']}' ({p['in']}): {p['problem']}" for p in problems)
        return JSONResponse({"error": f"invalid request: {text}", "fields": problems}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    routes = {r.path: r for r in app.routes if getattr(r, "path", None)}
    app.add_middleware(HotRoutes, related=related, complete=complete, cart_model=Cart, routes=routes,
                       on_http_error=http_error, on_invalid=invalid, max_body=settings.max_body_bytes)
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token)
    app.add_middleware(RequestLog, metrics=metrics, holder=holder, max_body_bytes=settings.max_body_bytes)
    return app


class BearerAuth:
    """ASGI middleware: every path but the probes, the scraper's, the page and the API docs needs
    ``Authorization: Bearer <token>``; 401 otherwise. One string comparison per request, before routing (a
    FastAPI dependency on each route cost a dependency resolution per request)."""

    OPEN = frozenset({"/", "/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json",
                      "/redoc"})

    def __init__(self, app, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.OPEN:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        body = json.dumps({"error": "missing or wrong bearer token (Authorization: Bearer ...)"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})


class RequestLog:
    """ASGI middleware: one JSON log line and the Prometheus counters per request, bodies above the limit refused
    with 413. The line names the route template (``/users/{user_id}/recommendations``), never the path's values
    or the query string, so no customer id reaches a log."""

    def __init__(self, app, metrics: ServiceMetrics, holder: ChampionHolder, max_body_bytes: int) -> None:
        self.app, self.metrics, self.holder, self.max_body = app, metrics, holder, max_body_bytes
        # request ids: a random prefix per process and a counter (uuid4 read /dev/urandom per request: 0.1 ms here)
        self.id_prefix, self.ids = uuid.uuid4().hex[:6], itertools.count()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            body = json.dumps({"error": f"request body of {int(length)} bytes is above the limit of {self.max_body} "
                                        "(COBUY_SERVE_MAX_BODY_BYTES)"}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            status = 413
            self._record(scope, status, t0)
            return

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status, t0)

    def _record(self, scope, status: int, t0: float) -> None:
        seconds = time.perf_counter() - t0
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"  # never the raw path: it may hold a customer id
        self.metrics.observe(endpoint, status, seconds)
        if log.isEnabledFor(logging.INFO):
            current = self.holder.current
            log.info(json.dumps({"ts": round(time.time(), 3), "event": "request",
                                 "id": f"{self.id_prefix}{next(self.ids):06x}",
                                 "method": scope.get("method"), "endpoint": endpoint, "status": status,
                                 "ms": round(seconds * 1000, 3),
                                 "model_version": current.version if current is not None else None}))
