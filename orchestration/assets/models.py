"""Fitted models, one asset per family. Each tunes (optionally, with Optuna on the validation split
carved from train), then fits on the whole train split; the test split is left to evaluation."""
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import markdown_table, png_md
from orchestration.resources import OptunaStorage, ArtifactStore
from training.models import (EASE, AssociationRules, ChebyCF, GraphFilter, IALSMatrixFactorization, ItemKNN, LightGCN,
                             LinearBlend, MatrixFactorization, Popularity)
from training.models.base import Recommender
from training.fitting import fit_final
from training.blend_tuning import tune_blend
from training.chebycf_tuning import tune_chebycf
from training.graph_filter_tuning import tune_graph_filter
from training.search_spaces import SEARCH_SPACES
from training.tuning import TuningConfig, TuningResult, tune

GROUP = "models"


class TunableConfig(dg.Config):
    """``tune_trials`` > 0 runs an Optuna study (TPE, seeded) before the final fit."""

    tune_trials: int = 0
    tune_timeout_seconds: Optional[float] = None
    tune_metric: str = "ndcg@20"
    tune_max_eval_users: Optional[int] = 10_000
    seed: int = 42


class AssociationConfig(TunableConfig):
    """``dp_epsilon``: publish rules from epsilon-differentially private counts (Laplace noise, each
    basket contributing at most ``dp_max_pairs_per_basket`` pairs; ``training/privacy.py``); None: exact."""

    min_support: float = 0.005
    min_confidence: float = 0.05
    rank_by: Literal["lift", "confidence"] = "lift"
    dp_epsilon: Optional[float] = None
    dp_max_pairs_per_basket: int = 45
    dp_seed: int = 0


class ItemKNNConfig(TunableConfig):
    k: int = 200
    shrink: float = 10.0
    alpha: float = 0.5
    weighting: Literal["none", "tfidf"] = "none"


class EASEConfig(TunableConfig):
    l2: float = 500.0


class GraphFilterConfig(TunableConfig):
    alpha: float = 0.3
    n_factors: int = 256
    sharpen: float = 0.0


class ChebyCFConfig(TunableConfig):
    """Defaults: ChebyCF's published Gowalla configuration (Kim et al., SIGIR 2025)."""

    order: int = 8
    flatness: float = 1.5
    n_factors: int = 512
    alpha: float = 0.2
    beta: float = 0.4
    post_beta: float = 0.4
    # Chebyshev coefficient rule: "extrema" as in the authors' released code (reproduces the published Gowalla
    # figures), "nodes" the exact interpolation at the Chebyshev nodes (training/models/chebycf.py)
    targets: Literal["extrema", "nodes"] = "extrema"


class BlendConfig(TunableConfig):
    """ChebyCF plus item-kNN; ``itemknn_weight`` is item-kNN's weight against ChebyCF's 1 (each scaled to its mean
    best score), searched in [0, 2] on validation when ``tune_trials`` > 0."""

    itemknn_weight: float = 0.3


class LightGCNConfig(TunableConfig):
    dim: int = 64
    n_layers: int = 3
    lr: float = 5e-3
    l2: float = 1e-4
    batch_size: int = 16384
    init: Literal["svd", "normal"] = "svd"
    max_epochs: int = 200
    max_minutes: Optional[float] = 60.0
    patience: int = 10
    devices: int = 1  # > 1: data-parallel training (DDP; gloo on CPU); batch_size stays the global batch
    strategy: str = "auto"
    loss: Literal["bpr", "ssm"] = "bpr"  # ssm: sampled softmax over the batch, cosine / temperature
    temperature: float = 0.1
    logq_correction: bool = True  # ssm: subtract log sampling probability from the logits (keeps popularity)
    # ssm: weight of log(1 + item popularity) added to the cosine score; None: chosen on validation each epoch
    pop_weight: Optional[float] = None
    # budget_linear: the learning rate falls linearly to 0 at max_minutes (Li et al., ICLR 2020)
    lr_schedule: Literal["constant", "budget_linear"] = "constant"


class MFConfig(TunableConfig):
    dim: int = 64
    lr: float = 2e-3
    l2: float = 1e-4
    batch_size: int = 4096
    max_epochs: int = 50
    patience: int = 5


class IALSConfig(TunableConfig):
    dim: int = 128
    alpha0: float = 0.02
    l2: float = 1e-3
    nu: float = 1.0
    cg_steps: int = 3
    max_epochs: int = 30
    patience: int = 3


def _image_md(path: str, title: str) -> dg.MetadataValue:
    return png_md(Path(path).read_bytes(), title)


def tune_family(context: dg.AssetExecutionContext, family: str, config: TunableConfig, params: dict[str, Any],
                build: Callable[[dict[str, Any]], Recommender], matrices: SplitMatrices, optuna: OptunaStorage,
                artifacts: ArtifactStore) -> tuple[dict[str, Any], dict]:
    """Run the family's Optuna study when ``config.tune_trials`` > 0; returns the parameters to fit
    with (defaults overridden by the best trial) and metadata for the UI."""
    if config.tune_trials <= 0:
        return params, {}
    cfg = tuning_config(context, family, config, optuna, artifacts)
    if family == "gf_cf":  # recombines cached terms instead of refitting per trial
        result = tune_graph_filter(matrices.fit, matrices.validation, cfg,
                                   max_factors=min(768, max(matrices.fit.n_items // 4, 2)))
        params = {}
    elif family == "chebycf":  # recombines cached Chebyshev bases; beta stays as configured
        space = dict(SEARCH_SPACES["chebycf"])
        space["n_factors"] = _capped_choices(space["n_factors"], matrices.fit.n_items)
        result = tune_chebycf(matrices.fit, matrices.validation, cfg, beta=params["beta"], space=space,
                              targets=params["targets"])
    else:
        result = tune(build, SEARCH_SPACES[family], matrices.fit, matrices.validation, cfg)
    return {**params, **result.best_params}, tuning_metadata(config, result)


def tuning_config(context: dg.AssetExecutionContext, family: str, config: TunableConfig, optuna: OptunaStorage,
                  artifacts: ArtifactStore) -> TuningConfig:
    """The family's Optuna study settings for this run (files under the run's ``tuning`` folder)."""
    return TuningConfig(n_trials=config.tune_trials, timeout_seconds=config.tune_timeout_seconds, storage=optuna.url,
                        # the root run's id: re-executing a failed run resumes its study instead of starting over
                        study_name=f"{family}-{(context.run.root_run_id or context.run.run_id)[:8]}",
                        seed=config.seed, metric=config.tune_metric, max_eval_users=config.tune_max_eval_users,
                        output_dir=str(artifacts.run_dir(context.run, "tuning")))


def tuning_metadata(config: TunableConfig, result: TuningResult) -> dict[str, Any]:
    """What the UI shows of a study: trials, best validation value, time, files and its plots."""
    metadata: dict[str, Any] = {
        "tuning_trials": result.n_trials, f"validation_{config.tune_metric}": result.best_value,
        "tuning_seconds": result.seconds, "optuna_study": result.study_name,
        "tuning_files": dg.MetadataValue.json(result.files)}
    for name in ("optimization_history", "param_importances"):
        if name in result.files:
            metadata[name] = _image_md(result.files[name], name)
    return metadata


def fit_family(context: dg.AssetExecutionContext, family: str, config: TunableConfig, params: dict[str, Any],
               build: Callable[[dict[str, Any]], Recommender], matrices: SplitMatrices, optuna: OptunaStorage,
               artifacts: ArtifactStore) -> tuple[Recommender, dict]:
    """Tune (when asked), then fit on the whole train split. Returns the model and UI metadata."""
    params, metadata = tune_family(context, family, config, params, build, matrices, optuna, artifacts)
    context.log.info(f"fitting {family} with {params}")
    model = remember_training(build(params).fit(matrices.train), params, metadata)
    metadata.update({"params": dg.MetadataValue.json(params), "fit_seconds": model.fit_seconds})
    return model, metadata


def remember_training(model: Recommender, params: dict[str, Any], metadata: dict) -> Recommender:
    """Keep the fitted parameters and the Optuna study's files on the model itself, so that they travel
    with it (asset input) to the registry, which logs them with the model's MLflow run."""
    files = metadata.get("tuning_files")
    model.training_params = dict(params)
    model.tuning_files = dict(files.data) if isinstance(files, dg.JsonMetadataValue) else {}
    return model


def _capped_choices(param: Any, n_items: int) -> Any:
    """A categorical number-of-singular-vectors choice capped at a quarter of the catalogue (small shops)."""
    cap = max(n_items // 4, 2)
    return type(param)("categorical", choices=sorted({min(c, cap) for c in param.choices}))


def _params(config: dg.Config, names: list[str]) -> dict[str, Any]:
    return {n: getattr(config, n) for n in names}


@dg.asset(group_name=GROUP)
def popularity_model(interaction_matrices: SplitMatrices) -> dg.Output[Popularity]:
    """Items ranked by how many users interacted with them."""
    model = remember_training(Popularity().fit(interaction_matrices.train), {}, {})
    return dg.Output(model, metadata={"fit_seconds": model.fit_seconds})


@dg.asset(group_name=GROUP)
def association_rules(context: dg.AssetExecutionContext, config: AssociationConfig,
                      interaction_matrices: SplitMatrices, validated_items: pd.DataFrame, optuna: OptunaStorage,
                      artifacts: ArtifactStore) -> dg.Output[AssociationRules]:
    """Pair rules over baskets (support, confidence, lift, leverage, conviction)."""
    params = _params(config, ["min_support", "min_confidence", "rank_by", "dp_epsilon", "dp_max_pairs_per_basket",
                              "dp_seed"])
    model, md = fit_family(context, "association_rules", config, params, lambda p: AssociationRules(**p),
                           interaction_matrices, optuna, artifacts)
    data = interaction_matrices.train
    top = model.rules.head(20).copy()
    titles = validated_items.set_index("item_id")["title"]
    top.insert(0, "antecedent_title", titles.reindex(data.item_ids[top["antecedent"]]).values)
    top.insert(1, "consequent_title", titles.reindex(data.item_ids[top["consequent"]]).values)
    top = top.drop(columns=["antecedent", "consequent", "antecedent_support", "consequent_support"])
    return dg.Output(model, metadata={**md, "rules": len(model.rules), "baskets": int(data.baskets.shape[0]),
                                      "differential_privacy": (f"epsilon={config.dp_epsilon}, at most "
                                                               f"{config.dp_max_pairs_per_basket} pairs per basket"
                                                               if config.dp_epsilon is not None else "off"),
                                      "top_pairs_by_lift": dg.MetadataValue.md(markdown_table(top))})


@dg.asset(group_name=GROUP)
def itemknn_model(context: dg.AssetExecutionContext, config: ItemKNNConfig, interaction_matrices: SplitMatrices,
                  optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output[ItemKNN]:
    """Item-item cosine neighbours (top-k per item)."""
    model, md = fit_family(context, "itemknn", config, _params(config, ["k", "shrink", "alpha", "weighting"]),
                           lambda p: ItemKNN(**p), interaction_matrices, optuna, artifacts)
    return dg.Output(model, metadata={**md, "neighbours": int(model.similarity.nnz)})


@dg.asset(group_name=GROUP)
def ease_model(context: dg.AssetExecutionContext, config: EASEConfig, interaction_matrices: SplitMatrices,
               optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output[EASE]:
    """EASE: closed-form item-item linear model (dense; n_items^2 floats)."""
    model, md = fit_family(context, "ease", config, _params(config, ["l2"]), lambda p: EASE(**p),
                           interaction_matrices, optuna, artifacts)
    return dg.Output(model, metadata=md)


@dg.asset(group_name=GROUP)
def graph_filter_model(context: dg.AssetExecutionContext, config: GraphFilterConfig,
                       interaction_matrices: SplitMatrices, optuna: OptunaStorage,
                       artifacts: ArtifactStore) -> dg.Output[GraphFilter]:
    """GF-CF family: linear item-item graph filter plus ideal low-pass filter (closed form)."""
    return fit_spectral(context, "gf_cf", GraphFilter, config, ["alpha", "n_factors", "sharpen"],
                        interaction_matrices, optuna, artifacts)


@dg.asset(group_name=GROUP)
def chebycf_model(context: dg.AssetExecutionContext, config: ChebyCFConfig, interaction_matrices: SplitMatrices,
                  optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output[ChebyCF]:
    """ChebyCF: Chebyshev-polynomial low-pass filter on the item graph plus an ideal pass filter, with degree
    normalisation (closed form; the project's most accurate family on Gowalla)."""
    return fit_spectral(context, "chebycf", ChebyCF, config, ["order", "flatness", "n_factors", "alpha", "beta",
                                                              "post_beta", "targets"], interaction_matrices, optuna,
                        artifacts)


def fit_spectral(context: dg.AssetExecutionContext, family: str, cls: type, config: TunableConfig, names: list[str],
                 m: SplitMatrices, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """A closed-form graph filter with its number of singular vectors capped at a quarter of the catalogue."""
    params = _params(config, names)
    params["n_factors"] = min(params["n_factors"], max(m.train.n_items // 4, 2))
    model, md = fit_family(context, family, config, {**params, "seed": config.seed}, lambda p: cls(**p), m, optuna,
                           artifacts)
    return dg.Output(model, metadata=md)


@dg.asset(group_name=GROUP)
def ials_model(context: dg.AssetExecutionContext, config: IALSConfig, interaction_matrices: SplitMatrices,
               optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output[IALSMatrixFactorization]:
    """Matrix factorisation by iALS (Rendle et al., RecSys 2022), trained with Lightning; epochs chosen on
    validation."""
    names = ["dim", "alpha0", "l2", "nu", "cg_steps", "max_epochs", "patience"]
    return fit_trained_factors(context, "mf_ials", IALSMatrixFactorization, config, names, interaction_matrices,
                               optuna, artifacts)


@dg.asset(group_name=GROUP)
def mf_model(context: dg.AssetExecutionContext, config: MFConfig, interaction_matrices: SplitMatrices,
             optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output[MatrixFactorization]:
    """Matrix factorisation with the BPR loss, trained with Lightning; epochs chosen on validation."""
    names = ["dim", "lr", "l2", "batch_size", "max_epochs", "patience"]
    return fit_trained_factors(context, "mf_bpr", MatrixFactorization, config, names, interaction_matrices, optuna,
                               artifacts)


def fit_trained_factors(context: dg.AssetExecutionContext, family: str, cls: type, config: TunableConfig,
                        names: list[str], m: SplitMatrices, optuna: OptunaStorage, artifacts: ArtifactStore
                        ) -> dg.Output:
    """Tune (each trial fits on ``fit`` with early stopping on the validation split), pick the epoch count
    on validation, refit on train."""
    base = {**_params(config, names), "seed": config.seed}
    params, md = tune_family(context, family, config, base, lambda p: cls(**p, early_stopping_data=m.validation), m,
                             optuna, artifacts)
    final, facts = fit_final(family, params, m.train, m.fit, m.validation)
    remember_training(final, params, md)
    md.update({"params": dg.MetadataValue.json(params), **facts, "fit_seconds": final.fit_seconds})
    return dg.Output(final, metadata=md)


@dg.asset(group_name=GROUP)
def lightgcn_model(context: dg.AssetExecutionContext, config: LightGCNConfig, interaction_matrices: SplitMatrices
                   ) -> dg.Output[LightGCN]:
    """LightGCN trained with Lightning; early-stopped on the validation split carved from train, and
    that model (fitted on train minus validation) is the one kept, graph training being the costly part; it
    serves its embeddings propagated over the whole train graph (``LightGCN.refresh``, no gradient step)."""
    m = interaction_matrices
    params = {**_params(config, ["dim", "n_layers", "lr", "l2", "batch_size", "init", "max_epochs", "max_minutes",
                                 "patience", "devices", "strategy", "loss", "temperature", "logq_correction",
                                 "pop_weight", "lr_schedule"]), "seed": config.seed}
    model, facts = fit_final("lightgcn", params, m.train, m.fit, m.validation)
    remember_training(model, params, {})
    curve = pd.DataFrame(facts.pop("curve"))
    return dg.Output(model, metadata={"params": dg.MetadataValue.json(params), **facts,
                                      "fit_seconds": model.fit_seconds,
                                      "validation_curve": dg.MetadataValue.md(markdown_table(curve))})


@dg.asset(group_name=GROUP)
def blend_model(context: dg.AssetExecutionContext, config: BlendConfig, interaction_matrices: SplitMatrices,
                chebycf_model: ChebyCF, itemknn_model: ItemKNN, optuna: OptunaStorage,
                artifacts: ArtifactStore) -> dg.Output[LinearBlend]:
    """ChebyCF and item-kNN blended (training/models/blend.py): the two fitted upstream models, weighted; the weight
    is tuned on validation with both refitted on train minus validation (the test split stays untouched)."""
    m, weight, md = interaction_matrices, config.itemknn_weight, {}
    if config.tune_trials > 0:
        components = [("chebycf", dict(chebycf_model.training_params)), ("itemknn", dict(itemknn_model.training_params))]
        result = tune_blend(m.fit, m.validation, tuning_config(context, "blend", config, optuna, artifacts), components)
        weight, md = result.best_params["weights"][1], tuning_metadata(config, result)
    model = LinearBlend.from_fitted([chebycf_model, itemknn_model], m.train, weights=[1.0, weight], seed=config.seed)
    params = {"components": [list(c) for c in model.components], "weights": model.weights}
    remember_training(model, params, md)
    return dg.Output(model, metadata={**md, "params": dg.MetadataValue.json(params), "scales": model.scales,
                                      "fit_seconds": model.fit_seconds})
