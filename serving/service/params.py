"""Query parameters of the list endpoints: one pydantic model per endpoint, validated in one call.

FastAPI validates declared ``Query(...)`` parameters one by one, re-inspecting each annotation on every request
(about 0.4 ms of CPU per request for the nine of ``/items/{id}/related``, half of what the endpoint cost once its
list was kept); :func:`query` reads them from the query string and validates the model at once. Errors are
FastAPI's own (``RequestValidationError``, location ``("query", <field>)``), so a bad value still gets a 422
naming its field; the parameters still appear in the OpenAPI page (``openapi_extra``)."""
from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ListParams(BaseModel):
    """The filters every list endpoint takes."""

    model_config = ConfigDict(extra="ignore")

    k: int = Field(10, ge=1, description="how many items")
    category: str | None = Field(None, description="only items of this catalog category")
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    in_stock: bool | None = Field(None, description="only items in (true) or out of (false) stock")
    exclude: list[str] = Field([], description="item ids never to return (repeat, or comma-separated)")

    @field_validator("exclude")
    @classmethod
    def _split(cls, value: list[str]) -> list[str]:
        return [e for x in value for e in x.split(",") if e]

    @property
    def filtered(self) -> bool:
        return not (self.category is None and self.min_price is None and self.max_price is None
                    and self.in_stock is None and not self.exclude)


class RelatedParams(ListParams):
    order: Literal["score", "co_purchases", "lift"] = Field(
        "score", description="score: the model's; co_purchases / lift: the baskets' evidence")
    min_co_purchases: int = Field(0, ge=0)
    min_lift: float = Field(0.0, ge=0)


class UserParams(ListParams):
    recent_items: list[str] = Field([], description="this session's item ids, folded in")
    session_weight: float = Field(1.0, ge=0, description="the session's items together weigh this many times the "
                                                         "whole history")

    @field_validator("recent_items")
    @classmethod
    def _split_recent(cls, value: list[str]) -> list[str]:
        return [e for x in value for e in x.split(",") if e]


def _is_list(field) -> bool:
    return getattr(field.annotation, "__origin__", None) is list


def query(model: type[BaseModel]):
    """(``parse(request)`` -> ``model`` from the request's query string, the route's ``openapi_extra``).
    A handler calls ``parse`` itself (a FastAPI dependency costs a resolution of its own per request)."""
    lists = {name for name, f in model.model_fields.items() if _is_list(f)}

    def parse(request: Request):
        params = request.query_params
        data = {key: params.getlist(key) if key in lists else value for key, value in params.items()}
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise RequestValidationError([{**err, "loc": ("query", *err["loc"])} for err in e.errors()]) from None

    schema = model.model_json_schema()
    parameters = [{"name": name, "in": "query", "required": False, "schema": prop,
                   **({"description": prop["description"]} if "description" in prop else {})}
                  for name, prop in schema["properties"].items()]
    return parse, {"parameters": parameters}
