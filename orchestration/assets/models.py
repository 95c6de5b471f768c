"""Fitted models, one asset per family. Each tunes (optionally, with Optuna on the validation split
carved from train), then fits on the whole train split; the test split is left to evaluation.

A family the run does not train comes out as a ``SkippedFamily`` (training/models/base.py) with the reason in
the asset's ``skipped`` metadata and in the log: left out of ``training_plan.families``, nothing in the training
data it can learn from, an estimate above the memory available (``training.models.footprint``), or a fit that
came out empty (no rules, no neighbours) at the configured thresholds. Downstream assets leave it out."""
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import frame_table, png_md
from orchestration.resources import ArtifactStore, CountingEngine, OptunaStorage, TrainingPlan
from training.counting import using_engine
from training import models as families  # classes resolve on first use (torch and Lightning only for those)
from training.models.association import why_no_rules
from training.models.base import Recommender, SkippedFamily, missing_training_data
from training.models.sansa_ease import SansaEASE, sansa_available
from training.models.sparse import SparseItemItem
from training.models.footprint import (DataSize, ease_fit_bytes, factor_fit_bytes, itemknn_fit_bytes,
                                       sansa_fit_bytes, spectral_fit_bytes)
from training.fitting import fit_final
from training.blend_tuning import tune_blend
from training.chebycf_tuning import tune_chebycf
from training.graph_filter_tuning import tune_graph_filter
from training.search_spaces import SEARCH_SPACES
from training.tuning import TuningConfig, TuningResult, tune

GROUP = "models"
# a model asset's output: the fitted model, or why the family was not trained this run
FITTED_OR_SKIPPED = dg.DagsterType(
    name="FittedOrSkipped", description="A fitted Recommender, or a SkippedFamily saying why it was not trained.",
    type_check_fn=lambda _, value: isinstance(value, (Recommender, SkippedFamily)))
FamilyModel = Any  # how downstream assets annotate a model input: a fitted Recommender or a SkippedFamily


class TunableConfig(dg.Config):
    """``tune_trials`` > 0 runs an Optuna study (TPE, seeded) before the final fit."""

    tune_trials: int = 0
    tune_timeout_seconds: Optional[float] = None
    tune_metric: str = "ndcg@20"
    tune_max_eval_users: Optional[int] = 10_000
    seed: int = 42


class AssociationConfig(TunableConfig):
    """``dp_epsilon``: publish rules from epsilon-differentially private counts (Laplace noise, each
    basket contributing at most ``dp_max_pairs_per_basket`` pairs; ``training/privacy.py``); None: exact.
    ``max_len``: longest itemset mined; 2 = pair rules, 3 (default) adds rules with two-item antecedents, null any
    length; with dp_epsilon set it must be 2 (docs/association_rules.md)."""

    min_support: float = 0.005
    min_confidence: float = 0.05
    max_len: Optional[int] = 3
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
    """``solver``: ``exact`` inverts the dense Gram matrix (n_items^2 floats, twice); ``sansa`` fits SANSA's sparse
    approximate inverse (training/models/sansa_ease.py; ``sansa_l2`` on its scaled Gram matrix, ``sansa_density``
    of n_items^2 weights per factor); ``auto`` takes exact EASE while it fits the memory budget, else SANSA."""

    l2: float = 500.0
    solver: Literal["auto", "exact", "sansa"] = "auto"
    sansa_l2: float = 20.0
    sansa_density: float = 5e-3


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


def data_size(m: SplitMatrices) -> DataSize:
    """The train split's size, which the memory estimates depend on."""
    return DataSize(m.train.n_users, m.train.n_items, int(m.train.user_items.nnz))


def skipped(context: dg.AssetExecutionContext, family: str, reason: str) -> dg.Output:
    """The asset's output for a family not trained this run: logged, and in the ``skipped`` metadata entry."""
    context.log.warning(f"{family} skipped: {reason}")
    return dg.Output(SkippedFamily(family, reason), metadata={"skipped": reason})


def reason_to_skip(family: str, plan: TrainingPlan, m: SplitMatrices, need_bytes: Optional[int] = None,
                   needs: str = "users") -> Optional[str]:
    """Why ``family`` is not fitted this run, checked before any work: not in the plan, no training data it can
    learn from, or an estimate of ``need_bytes`` above the memory the plan allows. None: fit it."""
    reason = plan.not_planned(family) or missing_training_data(family, m.train, needs)
    if reason is None and need_bytes is not None:
        size = data_size(m)
        reason = plan.budget().refusal(
            f"{family} at {size.n_items:,} items and {size.n_users:,} users", need_bytes,
            f"leave {family!r} out of training_plan.families, or run it where more memory is free")
    return reason


def _planned(context: dg.AssetExecutionContext, family: str, plan: TrainingPlan, m: SplitMatrices,
             need_bytes: Optional[int] = None, needs: str = "users") -> Optional[dg.Output]:
    """The skipped output when :func:`reason_to_skip` finds a reason, else None."""
    reason = reason_to_skip(family, plan, m, need_bytes, needs)
    return skipped(context, family, reason) if reason is not None else None


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def popularity_model(context: dg.AssetExecutionContext, interaction_matrices: SplitMatrices,
                     training_plan: TrainingPlan) -> dg.Output:
    """Items ranked by how many users interacted with them."""
    skip = _planned(context, "popularity", training_plan, interaction_matrices)
    if skip is not None:
        return skip
    model = remember_training(families.Popularity().fit(interaction_matrices.train), {}, {})
    return dg.Output(model, metadata={"fit_seconds": model.fit_seconds})


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def association_rules(context: dg.AssetExecutionContext, config: AssociationConfig,
                      interaction_matrices: SplitMatrices, validated_items: pd.DataFrame, training_plan: TrainingPlan,
                      optuna: OptunaStorage, artifacts: ArtifactStore,
                      counting: CountingEngine) -> dg.Output:
    """Pair rules over baskets (support, confidence, lift, leverage, conviction). No rule at the thresholds:
    skipped, with the most frequent pair's support (or the best confidence) and the threshold to lower."""
    skip = _planned(context, "association_rules", training_plan, interaction_matrices, needs="baskets")
    if skip is not None:
        return skip
    params = _params(config, ["min_support", "min_confidence", "rank_by", "dp_epsilon", "dp_max_pairs_per_basket",
                              "dp_seed", "max_len"])
    with using_engine(counting.counting()):  # counted where resources.counting says
        model, md = fit_family(context, "association_rules", config, params, lambda p: families.AssociationRules(**p),
                               interaction_matrices, optuna, artifacts)
    data = interaction_matrices.train
    if model.rules.empty:
        return skipped(context, "association_rules", why_no_rules(data.baskets, model.min_support,
                                                                  model.min_confidence, model.dp_epsilon))
    top = model.rules.head(20).copy()
    titles = validated_items.set_index("item_id")["title"]
    top.insert(0, "antecedent_title", titles.reindex(data.item_ids[top["antecedent"]]).values)
    top.insert(1, "consequent_title", titles.reindex(data.item_ids[top["consequent"]]).values)
    top = top.drop(columns=["antecedent", "consequent", "antecedent_support", "consequent_support"])
    multi = 0 if model.multi_rules is None else len(model.multi_rules)
    extra = {}
    if multi:
        named = model.multi_rules.to_frame().head(20)
        name = lambda items: " + ".join(map(str, titles.reindex(data.item_ids[list(items)]).values))  # noqa: E731
        extra["top_multi_item_rules_by_lift"] = frame_table(pd.DataFrame({
            "antecedent_titles": named["antecedent"].map(name), "consequent_title": named["consequent"].map(name),
            **{c: named[c] for c in ("support", "confidence", "lift", "leverage", "conviction")}}), 100)
    return dg.Output(model, metadata={**md, "rules": len(model.rules) + multi, "multi_item_antecedent_rules": multi,
                                      "max_len": str(model.max_len), "baskets": int(data.baskets.shape[0]),
                                      "counting_engine": counting.describe(),
                                      "differential_privacy": (f"epsilon={config.dp_epsilon}, at most "
                                                               f"{config.dp_max_pairs_per_basket} pairs per basket"
                                                               if config.dp_epsilon is not None else "off"),
                                      "top_pairs_by_lift": frame_table(top, 100), **extra})


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def itemknn_model(context: dg.AssetExecutionContext, config: ItemKNNConfig, interaction_matrices: SplitMatrices,
                  training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore,
                  counting: CountingEngine) -> dg.Output:
    """Item-item cosine neighbours (top-k per item). No neighbour at all: skipped, saying why."""
    m = interaction_matrices
    skip = _planned(context, "itemknn", training_plan, m, itemknn_fit_bytes(data_size(m), config.k))
    if skip is not None:
        return skip
    with using_engine(counting.counting()):  # counted where resources.counting says
        model, md = fit_family(context, "itemknn", config, _params(config, ["k", "shrink", "alpha", "weighting"]),
                               lambda p: families.ItemKNN(**p), m, optuna, artifacts)
    if model.similarity.nnz == 0:
        why = (f"k={model.k}: raise itemknn_model.k to 1 or more" if model.k < 1 else
               f"no two of the {m.train.n_items:,} items share a user (or a basket standing in for one) in train, "
               "so no item has a neighbour: item-kNN needs items bought together")
        return skipped(context, "itemknn", f"0 neighbours over {m.train.n_users:,} users: {why}")
    return dg.Output(model, metadata={**md, "counting_engine": counting.describe(),
                                      "neighbours": int(model.similarity.nnz),
                                      "items_with_neighbours": int((model.similarity.getnnz(axis=1) > 0).sum())})


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def ease_model(context: dg.AssetExecutionContext, config: EASEConfig, interaction_matrices: SplitMatrices,
               training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """EASE: closed-form item-item linear model (dense; n_items^2 floats), or SANSA where that does not fit;
    served as top-N neighbours when the catalogue is large (``training_plan.item_item_form``)."""
    m, budget = interaction_matrices, training_plan.budget()
    exact_bytes, sansa_bytes = ease_fit_bytes(data_size(m)), sansa_fit_bytes(data_size(m), config.sansa_density)
    # auto: SANSA only where exact EASE does not fit and SANSA does (else the exact estimate is the reason to skip)
    use_sansa = config.solver == "sansa" or (
        config.solver == "auto" and budget.refusal("ease", exact_bytes, "") is not None
        and budget.refusal("ease", sansa_bytes, "") is None and sansa_available())
    skip = _planned(context, "ease", training_plan, m, sansa_bytes if use_sansa else exact_bytes)
    if skip is not None:
        return skip
    if use_sansa:
        params, build = {"l2": config.sansa_l2, "density": config.sansa_density}, lambda p: SansaEASE(**p)
    else:
        params, build = _params(config, ["l2"]), lambda p: families.EASE(**p)
    model, md = fit_family(context, "ease", config, params, build, m, optuna, artifacts)
    model, served = served_as(context, "ease", model, training_plan, m)
    return dg.Output(model, metadata={**md, **served, "solver": "sansa" if use_sansa else "exact"})


def served_as(context: dg.AssetExecutionContext, family: str, model: Recommender, plan: TrainingPlan,
              m: SplitMatrices) -> tuple[Recommender, dict]:
    """``model`` cut to its top-N neighbours per item (``training.models.sparse``) when the plan serves this
    catalogue's item-item families sparse, with metadata saying so; else ``model`` as it is."""
    if plan.serving_form(family, m.train.n_items) != "sparse":
        return model, {}
    cut = SparseItemItem.from_model(model, plan.item_item_top_n)
    context.log.info(f"{family}: served as its top {cut.top_n} neighbours per item ({cut.matrix.nnz:,} weights; "
                     f"built in {cut.build_seconds:.0f} s)")
    return cut, {"serving_form": f"top {cut.top_n} neighbours per item", "neighbour_weights": int(cut.matrix.nnz),
                 "top_n_build_seconds": cut.build_seconds}


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def graph_filter_model(context: dg.AssetExecutionContext, config: GraphFilterConfig,
                       interaction_matrices: SplitMatrices, training_plan: TrainingPlan, optuna: OptunaStorage,
                       artifacts: ArtifactStore) -> dg.Output:
    """GF-CF family: linear item-item graph filter plus ideal low-pass filter (closed form)."""
    return fit_spectral(context, "gf_cf", families.GraphFilter, config, ["alpha", "n_factors", "sharpen"],
                        interaction_matrices, training_plan, optuna, artifacts)


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def chebycf_model(context: dg.AssetExecutionContext, config: ChebyCFConfig, interaction_matrices: SplitMatrices,
                  training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """ChebyCF: Chebyshev-polynomial low-pass filter on the item graph plus an ideal pass filter, with degree
    normalisation (closed form; the project's most accurate family on Gowalla)."""
    names = ["order", "flatness", "n_factors", "alpha", "beta", "post_beta", "targets"]
    return fit_spectral(context, "chebycf", families.ChebyCF, config, names, interaction_matrices,
                        training_plan, optuna, artifacts)


def fit_spectral(context: dg.AssetExecutionContext, family: str, cls: type, config: TunableConfig, names: list[str],
                 m: SplitMatrices, plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """A closed-form graph filter with its number of singular vectors capped at a quarter of the catalogue."""
    params = _params(config, names)
    params["n_factors"] = min(params["n_factors"], max(m.train.n_items // 4, 2))
    skip = _planned(context, family, plan, m, spectral_fit_bytes(data_size(m), params["n_factors"]))
    if skip is not None:
        return skip
    model, md = fit_family(context, family, config, {**params, "seed": config.seed}, lambda p: cls(**p), m, optuna,
                           artifacts)
    model, served = served_as(context, family, model, plan, m)
    return dg.Output(model, metadata={**md, **served})


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def ials_model(context: dg.AssetExecutionContext, config: IALSConfig, interaction_matrices: SplitMatrices,
               training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """Matrix factorisation by iALS (Rendle et al., RecSys 2022), trained with Lightning; epochs chosen on
    validation."""
    names = ["dim", "alpha0", "l2", "nu", "cg_steps", "max_epochs", "patience"]
    return fit_trained_factors(context, "ials", "mf_ials", families.IALSMatrixFactorization, config, names,
                               interaction_matrices, training_plan, optuna, artifacts)


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def mf_model(context: dg.AssetExecutionContext, config: MFConfig, interaction_matrices: SplitMatrices,
             training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """Matrix factorisation with the BPR loss, trained with Lightning; epochs chosen on validation."""
    names = ["dim", "lr", "l2", "batch_size", "max_epochs", "patience"]
    return fit_trained_factors(context, "mf", "mf_bpr", families.MatrixFactorization, config, names,
                               interaction_matrices, training_plan, optuna, artifacts)


def fit_trained_factors(context: dg.AssetExecutionContext, planned_as: str, family: str, cls: type,
                        config: TunableConfig, names: list[str], m: SplitMatrices, plan: TrainingPlan,
                        optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """Tune (each trial fits on ``fit`` with early stopping on the validation split), pick the epoch count
    on validation, refit on train. ``planned_as``: the family's name in ``training_plan.families``."""
    skip = _planned(context, planned_as, plan, m, factor_fit_bytes(data_size(m), getattr(config, "dim")))
    if skip is not None:
        return skip
    base = {**_params(config, names), "seed": config.seed}
    params, md = tune_family(context, family, config, base, lambda p: cls(**p, early_stopping_data=m.validation), m,
                             optuna, artifacts)
    final, facts = fit_final(family, params, m.train, m.fit, m.validation)
    remember_training(final, params, md)
    md.update({"params": dg.MetadataValue.json(params), **facts, "fit_seconds": final.fit_seconds})
    return dg.Output(final, metadata=md)


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def lightgcn_model(context: dg.AssetExecutionContext, config: LightGCNConfig, interaction_matrices: SplitMatrices,
                   training_plan: TrainingPlan) -> dg.Output:
    """LightGCN trained with Lightning; early-stopped on the validation split carved from train, and
    that model (fitted on train minus validation) is the one kept, graph training being the costly part; it
    serves its embeddings propagated over the whole train graph (``LightGCN.refresh``, no gradient step)."""
    m = interaction_matrices
    skip = _planned(context, "lightgcn", training_plan, m, factor_fit_bytes(data_size(m), config.dim))
    if skip is not None:
        return skip
    params = {**_params(config, ["dim", "n_layers", "lr", "l2", "batch_size", "init", "max_epochs", "max_minutes",
                                 "patience", "devices", "strategy", "loss", "temperature", "logq_correction",
                                 "pop_weight", "lr_schedule"]), "seed": config.seed}
    model, facts = fit_final("lightgcn", params, m.train, m.fit, m.validation)
    remember_training(model, params, {})
    curve = pd.DataFrame(facts.pop("curve"))
    return dg.Output(model, metadata={"params": dg.MetadataValue.json(params), **facts,
                                      "fit_seconds": model.fit_seconds,
                                      "validation_curve": frame_table(curve, 100)})


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def blend_model(context: dg.AssetExecutionContext, config: BlendConfig, interaction_matrices: SplitMatrices,
                chebycf_model: FamilyModel, itemknn_model: FamilyModel, training_plan: TrainingPlan,
                optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """ChebyCF and item-kNN blended (training/models/blend.py): the two fitted upstream models, weighted; the weight
    is tuned on validation with both refitted on train minus validation (the test split stays untouched).
    Skipped when either part was."""
    m, weight, md = interaction_matrices, config.itemknn_weight, {}
    reason = training_plan.not_planned("blend") or "; ".join(
        f"needs {part.family}, which was skipped ({part.reason})" for part in (chebycf_model, itemknn_model)
        if isinstance(part, SkippedFamily)) or None
    if reason is not None:
        return skipped(context, "blend", reason)
    if config.tune_trials > 0:
        components = [("chebycf", dict(chebycf_model.training_params)), ("itemknn", dict(itemknn_model.training_params))]
        result = tune_blend(m.fit, m.validation, tuning_config(context, "blend", config, optuna, artifacts), components)
        weight, md = result.best_params["weights"][1], tuning_metadata(config, result)
    model = families.LinearBlend.from_fitted([chebycf_model, itemknn_model], m.train, weights=[1.0, weight],
                                             seed=config.seed)
    params = {"components": [list(c) for c in model.components], "weights": model.weights}
    remember_training(model, params, md)
    scales = model.scales
    model, served = served_as(context, "blend", model, training_plan, m)
    return dg.Output(model, metadata={**md, **served, "params": dg.MetadataValue.json(params), "scales": scales,
                                      "fit_seconds": model.fit_seconds})
