"""The model families, each declared once: one :class:`FamilySpec` per family in :data:`FAMILIES`.

A family's name is the one name it goes by everywhere: ``training_plan.families``, ``model_exports.families``, the
registered model ``cobuy-<name>``, the ``model`` column of ``model_metrics``, the class's ``name`` attribute and the
benchmark's ``--model``. Its defaults live in one place, the model class's ``__init__`` signature (as in
LightningCLI): the Dagster config fields (``orchestration/assets/models.py``) read them from here, and
``tests/test_families.py`` fails when any other place declares a different value. To add a family, write its
class (``training.models.base.Recommender``) and declare one ``FamilySpec`` below; the asset, the tuning, the
export, the registry and the benchmark follow from it.

Importing this module imports no model code: a class is imported when :meth:`FamilySpec.load` is called, and
:attr:`FamilySpec.defaults` reads the signature from the class's source (``ast``) so that Dagster's code location can
declare its config without importing torch or Lightning (``tests/test_import_cost.py``).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, Mapping

from training.tuning import Param

# how ``model_exports`` writes a family: its (n_users + n_items, d) factors, one item-item form (a dense
# (n_items, n_items) matrix, its top-N neighbours or multi-item rules), or not on its own (evaluated; the serving
# gate bundles it when it wins)
ExportForm = Literal["factors", "item_item", "none"]
# which search runs when a family is tuned (``training.family_tuning``): Optuna refitting per trial, a fast search
# recombining cached terms, the blend's weights, the hybrid's signal weights (its own asset), or none
Tuner = Literal["optuna", "graph_filter", "chebycf", "blend", "hybrid", "none"]
# how the final model is fitted once its parameters are chosen (``training.fitting.fit_final``): once on train; or
# epochs picked by early stopping on validation, then refitted on train; or the early-stopped model kept
FinalFit = Literal["refit", "probe_epochs", "early_stopped"]
NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class FamilySpec:
    """Everything the project knows about one model family.

    ``model_class``: ``"module:Class"``, imported by :meth:`load`; ``asset``: the Dagster asset that fits it;
    ``search_space``: what its tuner searches (parameter names are the class's constructor parameters);
    ``tune_eval_users``: validation users a benchmark study samples per trial; ``standalone``: the class is built
    from keyword arguments alone (the hybrid needs fitted parts)."""

    name: str
    model_class: str
    asset: str
    export: ExportForm
    tuner: Tuner
    search_space: Mapping[str, Param] = field(default_factory=dict)
    final_fit: FinalFit = "refit"
    tune_eval_users: int = 10_000
    standalone: bool = True
    # other classes that fit the same family, by name (EASE's ``sansa``: a sparse approximate inverse at 50k+ items)
    variants: Mapping[str, str] = field(default_factory=dict)

    @property
    def served(self) -> bool:
        """Exported, registered (``cobuy-<name>``) and judged per family."""
        return self.export != "none"

    @property
    def linear(self) -> bool:
        """Scores are a fixed linear function of the history (one item-item form): a blend may take it."""
        return self.export == "item_item"

    def variant(self, name: str) -> FamilySpec:
        """The spec of the family fitted by its variant class ``name`` (same name, asset, export and tuner)."""
        return replace(self, model_class=self.variants[name], variants={})

    def registered_model(self, prefix: str = "cobuy-") -> str:
        """The MLflow registered model of the family (``MLflowRegistry.model_name``)."""
        return f"{prefix}{self.name}"

    def load(self) -> type:
        """The model class (imports its module: torch and Lightning for the trained families)."""
        module, name = self.model_class.split(":")
        return getattr(importlib.import_module(module), name)

    @cached_property
    def defaults(self) -> Mapping[str, Any]:
        """The constructor's keyword defaults, {parameter: default}, read from the class's source without importing
        it (a default that is not a literal or a module constant imports the module and asks ``inspect``)."""
        module, name = self.model_class.split(":")
        if module not in sys.modules:
            found = signature_defaults(module, name)
            if found is not None:
                return found
        return {p.name: p.default for p in inspect.signature(self.load().__init__).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def default(self, parameter: str) -> Any:
        """One constructor default (KeyError naming the family when the class has no such parameter)."""
        try:
            value = self.defaults[parameter]
        except KeyError:
            raise KeyError(f"{self.model_class} has no constructor parameter {parameter!r}") from None
        if value is NO_DEFAULT:
            raise KeyError(f"{self.model_class}({parameter}) has no default")
        return value


def _module_tree(module: str) -> ast.Module | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as f:
        return ast.parse(f.read(), spec.origin)


def _constant(module: str, name: str, depth: int = 0) -> Any:
    """A module-level literal ``name = ...`` of ``module`` (following ``from x import name``); ValueError if none."""
    tree = _module_tree(module)
    if tree is None or depth > 3:
        raise ValueError(name)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return ast.literal_eval(node.value)
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name and a.asname in (None, name)
                                                                    for a in node.names):
            return _constant(node.module, name, depth + 1)
    raise ValueError(name)


def signature_defaults(module: str, class_name: str) -> dict[str, Any] | None:
    """{parameter: default} of ``class_name.__init__`` in ``module``'s source (``inspect.Parameter.empty`` for a
    parameter without one; {} for a class without its own ``__init__`` and no base class that has one); None when
    the source cannot say (an ``__init__`` inherited from a base, a default that is an expression)."""
    tree = _module_tree(module)
    cls = next((n for n in (tree.body if tree else []) if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None:
        return None
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return {} if not cls.bases or all(isinstance(b, ast.Name) and b.id == "Recommender" for b in cls.bases) \
            else None
    args = init.args
    positional = args.posonlyargs + args.args
    values: list[Any] = [NO_DEFAULT] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, values)) + list(zip(args.kwonlyargs, args.kw_defaults))
    out: dict[str, Any] = {}
    for arg, node in pairs:
        if arg.arg == "self":
            continue
        if node is NO_DEFAULT or node is None:
            out[arg.arg] = NO_DEFAULT
            continue
        try:
            out[arg.arg] = ast.literal_eval(node)
        except ValueError:
            if not isinstance(node, ast.Name):
                return None
            try:
                out[arg.arg] = _constant(module, node.id)
            except ValueError:
                return None
    return out


def _declare(*specs: FamilySpec) -> dict[str, FamilySpec]:
    return {s.name: s for s in specs}


FAMILIES: dict[str, FamilySpec] = _declare(
    FamilySpec("popularity", "training.models.popularity:Popularity", "popularity_model", "factors", "none"),
    FamilySpec("association_rules", "training.models.association:AssociationRules", "association_rules",
               "item_item", "optuna", {
                   "min_support": Param("float", 0.001, 0.02, log=True),
                   "min_confidence": Param("float", 0.0, 0.5)}),
    FamilySpec("itemknn", "training.models.itemknn:ItemKNN", "itemknn_model", "item_item", "optuna", {
        "k": Param("int", 20, 400, log=True),
        "alpha": Param("float", 0.3, 0.9),
        "shrink": Param("float", 0.0, 100.0),
        "weighting": Param("categorical", choices=["none", "tfidf"])}),
    # EASE's l2 on Gowalla, validation NDCG@20: 1402: 0.1032, 500: 0.1123, 150: 0.1204, 51: 0.1232, 25: 0.1221
    # (the optimum is near 50, inside the space; the range reaches below it for sparser shops)
    FamilySpec("ease", "training.models.ease:EASE", "ease_model", "item_item", "optuna",
               {"l2": Param("float", 5.0, 1000.0, log=True)},
               variants={"sansa": "training.models.sansa_ease:SansaEASE"}),
    # GF-CF's terms in normalised coordinates (training/graph_filter_tuning.py): every trial recombines cached terms
    FamilySpec("gf_cf", "training.models.graph_filter:GraphFilter", "graph_filter_model", "item_item", "graph_filter", {
        "alpha": Param("float", 0.0, 0.5),
        "sharpen": Param("float", 0.0, 1.0),
        "popularity_power": Param("float", -0.1, 0.3),
        "ideal_power": Param("float", -1.0, 2.0),
        "n_factors": Param("categorical", choices=[256, 512, 768])},
        tune_eval_users=5_000),
    # ChebyCF (Kim et al., SIGIR 2025): filter order and flatness, ideal-pass size and weight, and the
    # post-normalisation exponent (the pre-normalisation one is fixed per study: training/chebycf_tuning.py)
    FamilySpec("chebycf", "training.models.chebycf:ChebyCF", "chebycf_model", "item_item", "chebycf", {
        "order": Param("int", 3, 8),
        "flatness": Param("float", 0.5, 3.0),
        "alpha": Param("float", 0.0, 0.6),
        "n_factors": Param("categorical", choices=[256, 384, 512]),
        "post_beta": Param("float", 0.2, 0.7)},
        tune_eval_users=4_000),
    FamilySpec("mf", "training.models.mf:MatrixFactorization", "mf_model", "factors", "optuna", {
        "dim": Param("categorical", choices=[32, 64, 128]),
        "lr": Param("float", 1e-3, 3e-2, log=True),
        "l2": Param("float", 1e-6, 1e-2, log=True)},
        final_fit="probe_epochs"),
    # iALS (Rendle et al., RecSys 2022): unobserved weight, regularisation (scaled by (count + alpha0 * n)^nu).
    # Ranges from Gowalla validation probes (dim 128; validation NDCG@20 on 10k users): alpha0 0.02 / l2 1e-3
    # gave 0.100, 0.005 / 3e-4 gave 0.094, 0.05 / 1e-2 only 0.055 (over-regularised, popularity-like).
    FamilySpec("ials", "training.models.mf:IALSMatrixFactorization", "ials_model", "factors", "optuna", {
        "dim": Param("categorical", choices=[128, 256]),
        "alpha0": Param("float", 5e-3, 0.1, log=True),
        "l2": Param("float", 2e-4, 5e-3, log=True)},
        final_fit="probe_epochs"),
    FamilySpec("lightgcn", "training.models.lightgcn:LightGCN", "lightgcn_model", "factors", "none",
               final_fit="early_stopped"),
    FamilySpec("blend", "training.models.blend:LinearBlend", "blend_model", "none", "blend", tune_eval_users=4_000),
    FamilySpec("hybrid", "training.models.hybrid:Hybrid", "hybrid_model", "none", "hybrid", standalone=False),
)

# the families exported, registered and judged one by one (the per-family registry), in their order
SERVED: tuple[str, ...] = tuple(n for n, s in FAMILIES.items() if s.served)
# exported as one item-item form (dense matrix, top-N neighbours or rules); the others as factors
ITEM_ITEM: tuple[str, ...] = tuple(n for n, s in FAMILIES.items() if s.export == "item_item")
# linear in the history: what a blend may combine
LINEAR: tuple[str, ...] = tuple(n for n, s in FAMILIES.items() if s.linear)
# what a run may train (``training_plan.families``)
PLANNED: tuple[str, ...] = tuple(FAMILIES)


def spec(family: str) -> FamilySpec:
    """The family's spec; ValueError listing the known names for any other name."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}: one of {', '.join(FAMILIES)}") from None

