"""Fitted models, one asset per family. Each tunes (optionally, with Optuna on the validation split
carved from train), then fits on the whole train split; the test split is left to evaluation.

A family the run does not train comes out as a ``SkippedFamily`` (training/models/base.py) with the reason in
the asset's ``skipped`` metadata and in the log: left out of ``training_plan.families``, nothing in the training
data it can learn from, an estimate above the memory available (``training.models.footprint``), or a fit that
came out empty (no rules, no neighbours) at the configured thresholds. Downstream assets leave it out.

Each config field that is a constructor parameter takes its default from the family's class
(``training.families``: ``FamilySpec.default``), so a default is declared once; ``tests/test_families.py`` checks."""
from pathlib import Path
from typing import Any, Literal, Optional

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import frame_table, png_md
from orchestration.progress import progress_log
from orchestration.resources import ArtifactStore, CountingEngine, OptunaStorage, TrainingPlan
from training.counting import using_engine
from training.models.association import why_no_rules
from training.models.base import Recommender, SkippedFamily, missing_training_data
from training.models.sansa_ease import sansa_available
from training.models.sparse import SparseItemItem
from training.models.footprint import (DataSize, ease_fit_bytes, factor_fit_bytes, human_bytes, itemknn_fit_bytes,
                                       sansa_fit_bytes, spectral_fit_bytes)
from training.families import FAMILIES, FamilySpec
from training.family_tuning import builder as trial_builder, factor_cap, tune_family as search
from training.fitting import fit_final
from training.tuning import TuningConfig, TuningResult

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


POPULARITY, ASSOCIATION, ITEMKNN, EASE, GF_CF, CHEBYCF, MF, IALS, LIGHTGCN, BLEND = (FAMILIES[f] for f in (
    "popularity", "association_rules", "itemknn", "ease", "gf_cf", "chebycf", "mf", "ials", "lightgcn", "blend"))
SANSA = EASE.variant("sansa")  # EASE where the exact solver does not fit


class AssociationConfig(TunableConfig):
    """``dp_epsilon``: publish rules from epsilon-differentially private counts (Laplace noise, each
    basket contributing at most ``dp_max_pairs_per_basket`` pairs; ``training/privacy.py``); None: exact.
    ``max_len``: longest itemset mined; 2 = pair rules, 3 (default) adds rules with two-item antecedents, null any
    length; with dp_epsilon set it must be 2 (docs/association_rules.md)."""

    min_support: float = ASSOCIATION.default("min_support")
    min_confidence: float = ASSOCIATION.default("min_confidence")
    max_len: Optional[int] = ASSOCIATION.default("max_len")
    rank_by: Literal["lift", "confidence"] = ASSOCIATION.default("rank_by")
    dp_epsilon: Optional[float] = ASSOCIATION.default("dp_epsilon")
    dp_max_pairs_per_basket: int = ASSOCIATION.default("dp_max_pairs_per_basket")
    dp_seed: int = ASSOCIATION.default("dp_seed")


class ItemKNNConfig(TunableConfig):
    k: int = ITEMKNN.default("k")
    shrink: float = ITEMKNN.default("shrink")
    alpha: float = ITEMKNN.default("alpha")
    weighting: Literal["none", "tfidf"] = ITEMKNN.default("weighting")


class EASEConfig(TunableConfig):
    """``solver``: ``exact`` inverts the dense Gram matrix (n_items^2 floats, twice); ``sansa`` fits SANSA's sparse
    approximate inverse (training/models/sansa_ease.py; ``sansa_l2`` on its scaled Gram matrix, ``sansa_density``
    of n_items^2 weights per factor); ``auto`` takes exact EASE while it fits the memory budget, else SANSA."""

    l2: float = EASE.default("l2")
    solver: Literal["auto", "exact", "sansa"] = "auto"
    sansa_l2: float = SANSA.default("l2")
    sansa_density: float = SANSA.default("density")


class GraphFilterConfig(TunableConfig):
    """``svd``: how the ideal low-pass filter's singular vectors are found: ``arpack`` exact, ``randomized`` (Halko
    et al., 2011) several times faster for hundreds of vectors on large catalogues (training/models/graph_filter.py)."""

    alpha: float = GF_CF.default("alpha")
    n_factors: int = GF_CF.default("n_factors")
    sharpen: float = GF_CF.default("sharpen")
    svd: Literal["arpack", "randomized"] = GF_CF.default("svd")


class ChebyCFConfig(TunableConfig):
    """Defaults: ChebyCF's published Gowalla configuration (Kim et al., SIGIR 2025); ``post_beta`` null: ``beta``.
    ``targets``: the Chebyshev coefficient rule, "extrema" as in the authors' released code (reproduces the
    published Gowalla figures), "nodes" the exact interpolation at the Chebyshev nodes (training/models/chebycf.py)."""

    order: int = CHEBYCF.default("order")
    flatness: float = CHEBYCF.default("flatness")
    n_factors: int = CHEBYCF.default("n_factors")
    alpha: float = CHEBYCF.default("alpha")
    beta: float = CHEBYCF.default("beta")
    post_beta: Optional[float] = CHEBYCF.default("post_beta")
    targets: Literal["extrema", "nodes"] = CHEBYCF.default("targets")


class BlendConfig(TunableConfig):
    """ChebyCF plus item-kNN; ``itemknn_weight`` is item-kNN's weight against ChebyCF's 1 (each scaled to its mean
    best score), searched in [0, 2] on validation when ``tune_trials`` > 0."""

    itemknn_weight: float = 0.3


class LightGCNConfig(TunableConfig):
    """``devices`` > 1: data-parallel training (DDP; gloo on CPU), ``batch_size`` staying the global batch;
    ``loss`` ``ssm``: sampled softmax over the batch, cosine / ``temperature``, ``logq_correction`` subtracting the
    log sampling probability (keeps popularity), ``pop_weight`` of log(1 + popularity) added to the score (null:
    chosen on validation each epoch); ``lr_schedule`` ``budget_linear``: the learning rate falls linearly to 0 at
    ``max_minutes`` (Li et al., ICLR 2020)."""

    dim: int = LIGHTGCN.default("dim")
    n_layers: int = LIGHTGCN.default("n_layers")
    lr: float = LIGHTGCN.default("lr")
    l2: float = LIGHTGCN.default("l2")
    batch_size: int = LIGHTGCN.default("batch_size")
    init: Literal["svd", "normal"] = LIGHTGCN.default("init")
    max_epochs: int = LIGHTGCN.default("max_epochs")
    max_minutes: Optional[float] = LIGHTGCN.default("max_minutes")
    patience: int = LIGHTGCN.default("patience")
    devices: int = LIGHTGCN.default("devices")
    strategy: str = LIGHTGCN.default("strategy")
    loss: Literal["bpr", "ssm"] = LIGHTGCN.default("loss")
    temperature: float = LIGHTGCN.default("temperature")
    logq_correction: bool = LIGHTGCN.default("logq_correction")
    pop_weight: Optional[float] = LIGHTGCN.default("pop_weight")
    lr_schedule: Literal["constant", "budget_linear"] = LIGHTGCN.default("lr_schedule")


class MFConfig(TunableConfig):
    dim: int = MF.default("dim")
    lr: float = MF.default("lr")
    l2: float = MF.default("l2")
    batch_size: int = MF.default("batch_size")
    max_epochs: int = MF.default("max_epochs")
    patience: int = MF.default("patience")


class IALSConfig(TunableConfig):
    dim: int = IALS.default("dim")
    alpha0: float = IALS.default("alpha0")
    l2: float = IALS.default("l2")
    nu: float = IALS.default("nu")
    cg_steps: int = IALS.default("cg_steps")
    max_epochs: int = IALS.default("max_epochs")
    patience: int = IALS.default("patience")


def _image_md(path: str, title: str) -> dg.MetadataValue:
    return png_md(Path(path).read_bytes(), title)


def tune_family(context: dg.AssetExecutionContext, family: FamilySpec, config: TunableConfig,
                params: dict[str, Any], matrices: SplitMatrices, optuna: OptunaStorage,
                artifacts: ArtifactStore) -> tuple[dict[str, Any], dict]:
    """Run the family's study (its ``FamilySpec.tuner``, the one the benchmark runs too) when
    ``config.tune_trials`` > 0; returns the parameters to fit with (``params`` overridden by the best trial) and
    metadata for the UI."""
    if config.tune_trials <= 0:
        return params, {}
    cfg = tuning_config(context, family.name, config, optuna, artifacts)
    params, result = search(family.name, params, matrices.fit, matrices.validation, cfg,
                            build=trial_builder(family, params, matrices.validation))
    return params, tuning_metadata(config, result)


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


def fit_family(context: dg.AssetExecutionContext, family: FamilySpec, config: TunableConfig,
               params: dict[str, Any], matrices: SplitMatrices, optuna: OptunaStorage,
               artifacts: ArtifactStore) -> tuple[Recommender, dict]:
    """Tune (when asked), then fit on the whole train split. Returns the model and UI metadata."""
    params, metadata = tune_family(context, family, config, params, matrices, optuna, artifacts)
    context.log.info(f"fitting {family.name} with {params}")
    model = remember_training(family.load()(**params).fit(matrices.train), params, metadata)
    metadata.update({"params": dg.MetadataValue.json(params), "fit_seconds": model.fit_seconds})
    return model, metadata


def remember_training(model: Recommender, params: dict[str, Any], metadata: dict) -> Recommender:
    """Keep the fitted parameters and the Optuna study's files on the model itself, so that they travel
    with it (asset input) to the registry, which logs them with the model's MLflow run."""
    files = metadata.get("tuning_files")
    model.training_params = dict(params)
    model.tuning_files = dict(files.data) if isinstance(files, dg.JsonMetadataValue) else {}
    return model


def family_params(config: dg.Config, family: FamilySpec, seed: bool = False) -> dict[str, Any]:
    """The config fields that are ``family``'s constructor parameters; ``seed``: with the run's seed
    (``TunableConfig.seed``, for the Optuna sampler too) as the model's."""
    params = {n: getattr(config, n) for n in type(config).model_fields if n in family.defaults and n != "seed"}
    return {**params, "seed": getattr(config, "seed")} if seed else params


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
    model = remember_training(POPULARITY.load()().fit(interaction_matrices.train), {}, {})
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
    with using_engine(counting.counting()):  # counted where resources.counting says
        model, md = fit_family(context, ASSOCIATION, config, family_params(config, ASSOCIATION), interaction_matrices,
                               optuna, artifacts)
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
    need = itemknn_fit_bytes(data_size(m), config.k, counting.block_rows())  # dense blocks here, or on Spark
    skip = _planned(context, "itemknn", training_plan, m, need)
    if skip is not None:
        return skip
    with using_engine(counting.counting()):  # counted where resources.counting says
        model, md = fit_family(context, ITEMKNN, config, family_params(config, ITEMKNN), m, optuna, artifacts)
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
    reason = reason_to_skip("ease", training_plan, m, sansa_bytes if use_sansa else exact_bytes, "users")
    if reason is not None and not use_sansa and config.solver == "auto" and training_plan.not_planned("ease") is None \
            and budget.refusal("ease", sansa_bytes, "") is None and not sansa_available():
        reason += (f"; or install SANSA (pip install 'cobuy[scale]', which needs SuiteSparse: apt-get install "
                   f"libsuitesparse-dev), with which EASE is fitted as a sparse approximate inverse in about "
                   f"{human_bytes(sansa_bytes)}")
    if reason is not None:
        return skipped(context, "ease", reason)
    if use_sansa:
        family, params = SANSA, {"l2": config.sansa_l2, "density": config.sansa_density}
    else:
        family, params = EASE, {"l2": config.l2}
    model, md = fit_family(context, family, config, params, m, optuna, artifacts)
    model, served = served_as(context, "ease", model, training_plan, m)
    return dg.Output(model, metadata={**md, **served, "solver": "sansa" if use_sansa else "exact"})


def served_as(context: dg.AssetExecutionContext, family: str, model: Recommender, plan: TrainingPlan,
              m: SplitMatrices) -> tuple[Recommender, dict]:
    """``model`` cut to its top-N neighbours per item (``training.models.sparse``) when the plan serves this
    catalogue's item-item families sparse, with metadata saying so; else ``model`` as it is."""
    if plan.serving_form(family, m.train.n_items) != "sparse":
        return model, {}
    cut = SparseItemItem.from_model(model, plan.item_item_top_n, progress=progress_log(context, f"{family} top-N rows"))
    context.log.info(f"{family}: served as its top {cut.top_n} neighbours per item ({cut.matrix.nnz:,} weights; "
                     f"built in {cut.build_seconds:.0f} s)")
    return cut, {"serving_form": f"top {cut.top_n} neighbours per item", "neighbour_weights": int(cut.matrix.nnz),
                 "top_n_build_seconds": cut.build_seconds}


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def graph_filter_model(context: dg.AssetExecutionContext, config: GraphFilterConfig,
                       interaction_matrices: SplitMatrices, training_plan: TrainingPlan, optuna: OptunaStorage,
                       artifacts: ArtifactStore) -> dg.Output:
    """GF-CF family: linear item-item graph filter plus ideal low-pass filter (closed form)."""
    return fit_spectral(context, GF_CF, config, interaction_matrices, training_plan, optuna, artifacts)


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def chebycf_model(context: dg.AssetExecutionContext, config: ChebyCFConfig, interaction_matrices: SplitMatrices,
                  training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """ChebyCF: Chebyshev-polynomial low-pass filter on the item graph plus an ideal pass filter, with degree
    normalisation (closed form; the project's most accurate family on Gowalla)."""
    return fit_spectral(context, CHEBYCF, config, interaction_matrices, training_plan, optuna, artifacts)


def fit_spectral(context: dg.AssetExecutionContext, family: FamilySpec, config: TunableConfig, m: SplitMatrices,
                 plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """A closed-form graph filter with its number of singular vectors capped at a quarter of the catalogue."""
    params = family_params(config, family, seed=True)
    params["n_factors"] = min(params["n_factors"], factor_cap(m.train.n_items))
    skip = _planned(context, family.name, plan, m, spectral_fit_bytes(data_size(m), params["n_factors"]))
    if skip is not None:
        return skip
    model, md = fit_family(context, family, config, params, m, optuna, artifacts)
    model, served = served_as(context, family.name, model, plan, m)
    return dg.Output(model, metadata={**md, **served})


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def ials_model(context: dg.AssetExecutionContext, config: IALSConfig, interaction_matrices: SplitMatrices,
               training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """Matrix factorisation by iALS (Rendle et al., RecSys 2022), trained with Lightning; epochs chosen on
    validation."""
    return fit_trained_factors(context, IALS, config, interaction_matrices, training_plan, optuna, artifacts)


@dg.asset(group_name=GROUP, dagster_type=FITTED_OR_SKIPPED)
def mf_model(context: dg.AssetExecutionContext, config: MFConfig, interaction_matrices: SplitMatrices,
             training_plan: TrainingPlan, optuna: OptunaStorage, artifacts: ArtifactStore) -> dg.Output:
    """Matrix factorisation with the BPR loss, trained with Lightning; epochs chosen on validation."""
    return fit_trained_factors(context, MF, config, interaction_matrices, training_plan, optuna, artifacts)


def fit_trained_factors(context: dg.AssetExecutionContext, family: FamilySpec, config: TunableConfig,
                        m: SplitMatrices, plan: TrainingPlan, optuna: OptunaStorage,
                        artifacts: ArtifactStore) -> dg.Output:
    """Tune (each trial fits on ``fit`` with early stopping on the validation split), pick the epoch count
    on validation, refit on train."""
    skip = _planned(context, family.name, plan, m, factor_fit_bytes(data_size(m), getattr(config, "dim")))
    if skip is not None:
        return skip
    params, md = tune_family(context, family, config, family_params(config, family, seed=True), m, optuna, artifacts)
    final, facts = fit_final(family.name, params, m.train, m.fit, m.validation)
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
    params = family_params(config, LIGHTGCN, seed=True)
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
        best, result = search("blend", {}, m.fit, m.validation, tuning_config(context, "blend", config, optuna,
                                                                               artifacts), components=components)
        weight, md = best["weights"][1], tuning_metadata(config, result)
    model = BLEND.load().from_fitted([chebycf_model, itemknn_model], m.train, weights=[1.0, weight],
                                             seed=config.seed)
    params = {"components": [list(c) for c in model.components], "weights": model.weights}
    remember_training(model, params, md)
    scales = model.scales
    model, served = served_as(context, "blend", model, training_plan, m)
    return dg.Output(model, metadata={**md, **served, "params": dg.MetadataValue.json(params), "scales": scales,
                                      "fit_seconds": model.fit_seconds})
