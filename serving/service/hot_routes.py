"""The two busiest endpoints answered without FastAPI's router: ``GET /items/{item_id}/related`` and
``POST /baskets/complete``.

Through the router a request passes the exception and exit-stack middleware, the match against every route,
the dependency resolution of the handler's parameters and FastAPI's body reading and validation: about 0.1 ms
of CPU per request, as much as a kept related list costs to answer. :class:`HotRoutes` sits inside the request
log and the bearer check, matches the two paths itself and calls the same handler functions the routes call
(the routes stay registered: the OpenAPI page, and every request the fast path does not take, go through them).
It answers a request only when it can answer it exactly as the route would: a body that does not validate, one
without a JSON content type or a length, or a path that is not one item id goes to the router, the body
replayed; the handlers' errors (``HTTPException``, ``RequestValidationError``) get the app's own handlers."""
from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

RELATED_PREFIX, RELATED_SUFFIX = "/items/", "/related"


class HotRoutes:
    """ASGI middleware. ``related(item_id, request)`` and ``complete(cart, request)``: the routes' handlers;
    ``cart_model``: the body's pydantic model; ``routes``: {path template: route object}, put in the scope as
    the router does (the request log names the endpoint by it); ``on_http_error(request, exc)`` and
    ``on_invalid(request, exc)``: the app's exception handlers; ``max_body``: the body limit in bytes."""

    def __init__(self, app, related, complete, cart_model: type[BaseModel], routes: dict, on_http_error,
                 on_invalid, max_body: int) -> None:
        self.app, self.related, self.complete, self.cart_model = app, related, complete, cart_model
        self.related_route = routes["/items/{item_id}/related"]
        self.complete_route = routes["/baskets/complete"]
        self.on_http_error, self.on_invalid, self.max_body = on_http_error, on_invalid, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET" and path.startswith(RELATED_PREFIX) and path.endswith(RELATED_SUFFIX):
                item_id = path[len(RELATED_PREFIX):-len(RELATED_SUFFIX)]
                if item_id and "/" not in item_id:
                    scope["route"], scope["path_params"] = self.related_route, {"item_id": item_id}
                    request = Request(scope, receive)
                    return await self._respond(self.related(item_id, request), request, send)
            elif method == "POST" and path == "/baskets/complete":
                return await self._basket(scope, receive, send)
        await self.app(scope, receive, send)

    async def _basket(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or [])
        length, kind = headers.get(b"content-length", b""), headers.get(b"content-type", b"")
        if not length.isdigit() or int(length) > self.max_body or not kind.startswith(b"application/json"):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            cart = self.cart_model.model_validate_json(body)
        except ValidationError:  # FastAPI words the 422 (or parses what this strict reading refused)
            return await self.app(scope, _replay(body), send)
        scope["route"] = self.complete_route
        request = Request(scope, _replay(body))
        await self._respond(self.complete(cart, request), request, send)

    async def _respond(self, answering, request: Request, send) -> None:
        try:
            response = await answering
        except HTTPException as exc:
            response = await self.on_http_error(request, exc)
        except RequestValidationError as exc:
            response = await self.on_invalid(request, exc)
        await response(request.scope, request.receive, send)


def _replay(body: bytes):
    """A ``receive`` that gives ``body`` once, then waits for the disconnect as a real one would."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
