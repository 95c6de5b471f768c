"""Model families behind one contract (:class:`training.models.base.Recommender`), as declared in
:mod:`training.families` (one ``FamilySpec`` each).

The families are imported when first used (``MODELS["lightgcn"]`` or ``from training.models import LightGCN``), not
when this package is: BPR-MF, iALS and LightGCN pull in torch and Lightning (seconds), and every module that only
needs the contract (``training.models.base``) or one light family would otherwise pay for them.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from training.families import FAMILIES as FAMILY_SPECS
from training.models.base import Recommender

# class name -> the module that defines it, and family name -> class name: both from the family registry
_CLASSES: dict[str, str] = {s.model_class.split(":")[1]: s.model_class.split(":")[0] for s in FAMILY_SPECS.values()}
# the families built from keyword arguments alone (the hybrid is assembled from fitted parts)
_FAMILIES: dict[str, str] = {n: s.model_class.split(":")[1] for n, s in FAMILY_SPECS.items() if s.standalone}


def _load(class_name: str) -> type[Recommender]:
    return getattr(importlib.import_module(_CLASSES[class_name]), class_name)


class _LazyModels(Mapping[str, type[Recommender]]):
    """A read-only mapping of family name to class that imports a family's module on first lookup."""

    def __getitem__(self, family: str) -> type[Recommender]:
        if family not in _FAMILIES:
            raise KeyError(family)
        return _load(_FAMILIES[family])

    def __iter__(self) -> Iterator[str]:
        return iter(_FAMILIES)

    def __len__(self) -> int:
        return len(_FAMILIES)

    def __repr__(self) -> str:
        return f"MODELS({', '.join(_FAMILIES)})"


MODELS: Mapping[str, type[Recommender]] = _LazyModels()


def __getattr__(name: str) -> type[Recommender]:
    """``from training.models import LightGCN`` imports ``training.models.lightgcn`` at that moment (PEP 562)."""
    if name in _CLASSES:
        value = _load(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'training.models' has no attribute {name!r}")


__all__ = ["MODELS", "Recommender", *_CLASSES]
