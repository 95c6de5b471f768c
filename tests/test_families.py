"""The family registry (``training.families``) is the one declaration of each model family: every family resolves
to its class, its defaults are declared once (the class's signature; a Dagster config field or a benchmark setting
that restates one with another value fails here), its search space names constructor parameters, and every other
place that names families uses the registry's names. Behaviour per family is ``tests/test_model_contract.py``."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from training.families import FAMILIES, ITEM_ITEM, LINEAR, NO_DEFAULT, PLANNED, SERVED, FamilySpec
from training.models.base import Recommender

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(FAMILIES)


def _signature(cls: type) -> dict:
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize("name", NAMES)
def test_every_family_resolves_to_a_recommender_named_after_it(name):
    spec = FAMILIES[name]
    cls = spec.load()
    assert issubclass(cls, Recommender), cls
    assert cls.name == name, f"{cls.__name__}.name is {cls.name!r}: model_metrics and the registry would disagree"
    for variant in spec.variants:
        assert spec.variant(variant).load().name == name


@pytest.mark.parametrize("name", NAMES)
def test_defaults_read_from_source_equal_the_signature(name):
    """``FamilySpec.defaults`` reads the class's source (no import, for the code location); it must say what
    ``inspect`` says of the imported class."""
    spec = FAMILIES[name]
    fresh = FamilySpec(spec.name, spec.model_class, spec.asset, spec.export, spec.tuner)
    from training.families import signature_defaults

    module, cls_name = spec.model_class.split(":")
    from_source = signature_defaults(module, cls_name)
    assert from_source is not None, f"{spec.model_class}: the source reader gave up"
    assert from_source == _signature(spec.load()) == dict(fresh.defaults)


@pytest.mark.parametrize("name", NAMES)
def test_search_space_names_constructor_parameters(name):
    spec = FAMILIES[name]
    params = _signature(spec.load())
    assert set(spec.search_space) <= set(params), set(spec.search_space) - set(params)
    if spec.tuner in ("optuna", "graph_filter", "chebycf"):
        assert spec.search_space, f"{name}: tuner {spec.tuner} with nothing to search"
    if spec.tuner in ("none", "blend", "hybrid"):
        assert not spec.search_space, f"{name}: a search space its tuner never reads"


def test_export_forms_and_the_derived_vocabularies():
    assert SERVED == tuple(n for n in PLANNED if FAMILIES[n].export != "none")
    assert set(ITEM_ITEM) == set(LINEAR) and set(ITEM_ITEM) <= set(SERVED)
    for name in LINEAR:  # what a blend takes is linear in the history: one ItemItem-like export
        cls = FAMILIES[name].load()
        assert getattr(cls, "is_linear", True), name
    assert len({s.asset for s in FAMILIES.values()}) == len(FAMILIES)


def _asset_configs() -> dict[str, type]:
    """{family: the Dagster config class of its model asset}, read from the assets' signatures."""
    from orchestration.definitions import defs

    out = {}
    for spec in FAMILIES.values():
        asset = defs.resolve_assets_def(spec.asset)
        fn = asset.op.compute_fn.decorated_fn
        config = inspect.signature(fn).parameters.get("config")
        if config is not None:
            out[spec.name] = config.annotation
    return out


def test_dagster_config_defaults_are_the_class_defaults():
    """A config field named like a constructor parameter takes the class's default (``seed`` is the run's: it seeds
    the Optuna sampler too). EASE's SANSA settings are the SANSA class's."""
    configs = _asset_configs()
    assert {"association_rules", "itemknn", "ease", "gf_cf", "chebycf", "mf", "ials", "lightgcn"} <= set(configs)
    disagree = []
    for family, config in configs.items():
        defaults = _signature(FAMILIES[family].load())
        for field, info in config.model_fields.items():
            if field == "seed" or field not in defaults or (family, field) == ("ease", "solver"):
                continue  # EASEConfig.solver picks exact or SANSA; EASE(solver=...) is its primal/dual choice
            if defaults[field] is NO_DEFAULT or info.default != defaults[field]:
                disagree.append(f"{config.__name__}.{field} = {info.default!r}, class default {defaults[field]!r}")
    sansa = _signature(FAMILIES["ease"].variant("sansa").load())
    ease = configs["ease"].model_fields
    for field, param in (("sansa_l2", "l2"), ("sansa_density", "density")):
        if ease[field].default != sansa[param]:
            disagree.append(f"EASEConfig.{field} = {ease[field].default!r}, SansaEASE {param} {sansa[param]!r}")
    assert not disagree, "defaults declared twice with different values:\n" + "\n".join(disagree)


def test_benchmark_settings_name_families_and_parameters():
    """The benchmark's per-dataset settings override the class defaults of registry families only, by constructor
    parameter; a source file's data gets the class defaults themselves."""
    from benchmarks import common, run
    from benchmarks.data import BenchmarkDataset

    assert set(run.FAMILIES) == set(FAMILIES) | {"text_encoder"}
    for dataset, families in common.MODEL_PARAMS.items():
        for family, params in families.items():
            assert family in FAMILIES, (dataset, family)
            unknown = set(params) - set(_signature(FAMILIES[family].load()))
            assert not unknown, (dataset, family, unknown)
    assert {f for _, f in run.PUBLISHED} <= set(FAMILIES)
    own_file = BenchmarkDataset("my_shop", {"kind": "synthetic"})
    assert common.default_params(own_file, "itemknn") == {} and common.default_params("gowalla", "itemknn")


def test_the_name_vocabulary_is_the_registrys_everywhere():
    from orchestration.assets.registry import PARITY_CHECKS, ExportConfig, ServingGateConfig
    from orchestration.assets.scoring import RELATED_PREFERENCE, USER_PREFERENCE
    from orchestration.resources import TrainingPlan
    from orchestration.sensors import DriftPolicy
    from serving.service.bundle import SCORE_MEANING

    assert set(PARITY_CHECKS) == set(SERVED) == set(ExportConfig().families)
    assert list(TrainingPlan().families) == list(PLANNED) == list(ServingGateConfig().families)
    assert set(DriftPolicy.model_fields["champion_families"].default) <= set(SERVED)
    assert set(RELATED_PREFERENCE) | set(USER_PREFERENCE) <= set(SERVED)
    assert set(SCORE_MEANING) == set(PLANNED)
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        text = yaml.safe_load(path.read_text())
        named = (text.get("resources", {}).get("training_plan", {}).get("config", {}).get("families", [])
                 + text.get("ops", {}).get("model_exports", {}).get("config", {}).get("families", []))
        assert set(named) <= set(PLANNED), (path.name, set(named) - set(PLANNED))
