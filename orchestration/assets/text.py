"""The text side: a BERT-family encoder fine-tuned on co-purchases, embeddings for every catalog
item (new ones included), and the cold-start evaluation."""
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import frame_table, png_md
from orchestration.resources import ArtifactStore
from training.cold_start import (PartnerPolicy, build_task, embedding_scorer, evaluate_cold, fit_partner_policy,
                                 partner_shares, popularity_scorer, tfidf_scorer, twin_partners_scorer)
from training.plots import prior_weight_curve_png
from training.splits import Split
from training.strict_cold_start import StrictColdStartConfig, difference_table, method_table, run_strict_cold_start

if TYPE_CHECKING:  # training.text_encoder imports torch, Lightning and transformers: only where an asset runs
    from training.text_encoder import TextEncoder, TextEncoderConfig

GROUP = "text"


class TextEncoderSettings(dg.Config):
    """``model_name``: any Hugging Face name or local path; empty = the packaged all-MiniLM-L6-v2.
    ``steps`` = 0 keeps the encoder as it is (no fine-tuning)."""

    model_name: str = ""
    steps: int = 250
    batch_size: int = 64
    lr: float = 1e-4
    temperature: float = 0.05
    max_length: int = 32
    min_pair_count: int = 2
    user_weight: float = 0.1
    seed: int = 0
    devices: int = 1  # > 1: data-parallel fine-tuning (DDP; gloo on CPU); batch_size stays the global batch
    strategy: str = "auto"


@dataclass
class TextEncoderArtifact:
    """A saved Hugging Face folder plus what scoring needs (the temperature) and how it was trained."""

    path: str
    base_model: str
    temperature: float
    max_length: int
    history: dict


def _config(s: TextEncoderSettings, **extra) -> "TextEncoderConfig":
    from training.text_encoder import TextEncoderConfig

    return TextEncoderConfig(model_name=s.model_name, steps=max(s.steps, 1), batch_size=s.batch_size, lr=s.lr,
                             temperature=s.temperature, max_length=s.max_length, min_pair_count=s.min_pair_count,
                             user_weight=s.user_weight, devices=s.devices, strategy=s.strategy,
                             seed=s.seed, **extra)


@dg.asset(group_name=GROUP)
def text_encoder(context: dg.AssetExecutionContext, config: TextEncoderSettings, interaction_matrices: SplitMatrices,
                 validated_items: pd.DataFrame, artifacts: ArtifactStore) -> dg.Output[TextEncoderArtifact]:
    """The encoder fine-tuned (Lightning, contrastive) on item pairs bought together in train."""
    import torch

    from training.text_encoder import TextEncoder, item_texts, mine_pairs

    cfg = _config(config)
    encoder = TextEncoder(cfg)
    texts = item_texts(validated_items)
    train = interaction_matrices.train
    pairs, counts = mine_pairs(train.baskets, train.user_items, config.min_pair_count, config.user_weight)
    if config.steps > 0 and len(pairs) >= 2 * config.batch_size:
        encoder.fit(texts, pairs, counts, checkpoint_dir=str(artifacts.run_dir(context.run, "checkpoints")),
                    log=context.log.info)
        encoder.fit_popularity_head(texts, np.bincount(train.baskets.indices, minlength=train.n_items))
    else:
        context.log.warning(f"not fine-tuning: steps={config.steps}, {len(pairs)} co-purchase pairs")
    folder = encoder.save(artifacts.run_dir(context.run, "text_encoder"))
    art = TextEncoderArtifact(str(folder), encoder.model_name, cfg.temperature, cfg.max_length,
                              {**encoder.history, "fit_seconds": encoder.fit_seconds})
    torch_state = encoder.module.bias.state_dict()
    torch.save(torch_state, folder / "bias_head.pt")
    return dg.Output(art, metadata={"path": dg.MetadataValue.path(str(folder)), "base_model": encoder.model_name,
                                    "co_purchase_pairs": len(pairs), **{k: v for k, v in encoder.history.items()
                                                                        if isinstance(v, (int, float))}})


def load_encoder(art: TextEncoderArtifact) -> "TextEncoder":
    import torch

    from training.text_encoder import TextEncoder, TextEncoderConfig

    enc = TextEncoder(TextEncoderConfig(model_name=art.path, temperature=art.temperature, max_length=art.max_length))
    enc.module.bias.load_state_dict(torch.load(f"{art.path}/bias_head.pt", map_location="cpu"))
    return enc


def text_matrix(item_text_embeddings: pd.DataFrame, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (n_items, dim) and biases (n_items,) of ``item_text_embeddings`` in the order of ``item_ids``
    (the matrices' item positions); an item without a row gets zeros."""
    table = item_text_embeddings.set_index(item_text_embeddings["item_id"].astype(str))
    dim = len(table["embedding"].iloc[0]) if len(table) else 1
    emb, bias = np.zeros((len(item_ids), dim), np.float32), np.zeros(len(item_ids), np.float32)
    pos = table.index.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
    known = pos >= 0
    if known.any():
        emb[known] = np.stack(table["embedding"].to_numpy()[pos[known]])
        bias[known] = table["bias"].to_numpy(np.float32)[pos[known]]
    return emb, bias


def catalog_in_order(validated_items: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """The catalog's rows in the order of ``item_ids``; raises naming the first ids the catalog lacks."""
    catalog = validated_items.set_index(validated_items["item_id"].astype(str))
    ids = pd.Index(np.asarray(item_ids).astype(str))
    missing = ids[~ids.isin(catalog.index)]
    if len(missing):
        raise ValueError(f"validated_items lacks {len(missing)} item(s) of the interaction matrices, e.g. "
                         f"{list(missing[:5])}")
    return catalog.loc[ids].reset_index(drop=True)


class PartnerPolicyConfig(dg.Config):
    """``n_twins`` nearest text neighbours among sold items (at most ``cold_item_neighbours``' k when served),
    weighted by softmax(cosine / ``temperature``): on Online Retail's validation windows (items new to the encoder)
    20-50 twins at 0.1 ranked new items' partners best (benchmarks/results/online_retail-text_encoder.json,
    ``partner_settings``). ``prior_weight``: the weight of the candidates' log popularity added to the twins'
    partners; None chooses it on the new items of the split's validation window (0, no prior, without one)."""

    n_twins: int = 20
    temperature: float = 0.1
    prior_weight: Optional[float] = None


@dg.asset(group_name=GROUP)
def cold_partner_policy(config: PartnerPolicyConfig, training_split: Split, interaction_matrices: SplitMatrices,
                        item_text_embeddings: pd.DataFrame) -> dg.Output[PartnerPolicy]:
    """How new items' partners are scored: their textual twins' partners plus the candidates' log popularity, at a
    weight chosen once on the items first sold in the validation window. ``cold_start_metrics`` evaluates this
    policy and ``cold_item_partners`` serves it, so both use the same settings and weight. The encoder has seen the
    validation window's pairs, so its twins there are somewhat better than a new item's will be."""
    train = interaction_matrices.train
    emb, bias = text_matrix(item_text_embeddings, train.item_ids)
    temporal = training_split.cutoff is not None and len(training_split.validation) > 0
    policy = fit_partner_policy(training_split.train,
                                training_split.validation["timestamp"].min() if temporal else None,
                                interaction_matrices.fit.baskets, train.baskets, train.item_ids, emb, bias,
                                config.n_twins, config.temperature, config.prior_weight)
    meta = {"prior_weight": policy.prior_weight, "prior_weight_from": policy.chosen_from, "n_twins": policy.n_twins,
            "temperature": policy.temperature}
    if policy.validation_new_items is not None:
        meta["validation_new_items"] = policy.validation_new_items
    if policy.curve:
        curve = pd.DataFrame({"weight": list(policy.curve),
                              "validation_recall_plus_ndcg_at_20": list(policy.curve.values())})
        meta["prior_weight_curve"] = frame_table(curve, 100)
        meta["prior_weight_plot"] = png_md(prior_weight_curve_png(policy.curve, policy.prior_weight), "prior weight")
    return dg.Output(policy, metadata=meta)


@dg.asset(group_name=GROUP)
def item_text_embeddings(text_encoder: TextEncoderArtifact, validated_items: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """One L2-normalised embedding (and bias) per catalog item, from its text alone: new items too."""
    from training.text_encoder import item_texts

    enc = load_encoder(text_encoder)
    z, b = enc.encode(item_texts(validated_items))
    table = pd.DataFrame({"item_id": validated_items["item_id"].astype("string").values,
                          "embedding": list(z), "bias": b})
    return dg.Output(table, metadata={"items": len(table), "dim": int(z.shape[1]) if len(z) else 0})


class ColdStartConfig(dg.Config):
    """``ks``: the cut-offs reported. The '+partners' rows use ``cold_partner_policy``'s twins and temperature, and
    '+partners+prior' is that policy as ``cold_item_partners`` serves it.

    Without a temporal cut (basket completion, per-customer holdout) the evaluation is strict cold start
    (``training.strict_cold_start``): ``strict_holdout_fraction`` of the sold items (seed ``strict_seed``) leave the
    training data entirely; an encoder is fine-tuned here on what remains (``strict_steps`` steps of
    ``strict_batch_size`` pairs; None: as many steps as ``text_encoder`` ran, which saw the held-out items and so
    cannot be used), and the partner policy's settings are chosen on ``strict_max_validation_items`` training items
    carved out the same way. It costs one fine-tuning and two encodings of the whole catalog: ``strict: False``
    skips it (saying so in metadata)."""

    ks: list[int] = [10, 20, 50]
    strict: bool = True
    strict_holdout_fraction: float = 0.1
    strict_seed: int = 0
    strict_steps: Optional[int] = None
    strict_batch_size: int = 64
    strict_max_validation_items: int = 1000


@dg.asset(group_name="evaluation")
def cold_start_metrics(context: dg.AssetExecutionContext, config: ColdStartConfig, training_split: Split,
                       validated_items: pd.DataFrame, interaction_matrices: SplitMatrices,
                       text_encoder: TextEncoderArtifact, item_text_embeddings: pd.DataFrame,
                       cold_partner_policy: PartnerPolicy) -> dg.Output[pd.DataFrame]:
    """Items first sold after the cut, ranked by text alone against what was bought with them:
    fine-tuned encoder vs the same encoder untuned, TF-IDF on titles, and popularity; and both encoders' textual
    twins' partners (what ``cold_item_partners`` serves). On a split without a temporal cut (data without time) it is
    strict cold start instead (``training.strict_cold_start``, settings in ``ColdStartConfig``): held-out items
    removed from training entirely, the same kinds of methods plus popularity within the item's category, and the
    paired bootstrap differences in metadata."""
    from training.text_encoder import TextEncoder, TextEncoderConfig, item_texts

    if training_split.cutoff is None:
        return _strict_cold_start(context, config, training_split, validated_items, interaction_matrices, text_encoder)
    # the test split keeps only new pairs of known users; cold items need every row after the cut
    rows_all = pd.concat([training_split.train, training_split.after_cutoff], ignore_index=True)
    task = build_task(rows_all, interaction_matrices.train.item_ids, training_split.cutoff)
    train = interaction_matrices.train
    policy = cold_partner_policy
    policy.aligned_to(train.item_ids)
    # every scorer below indexes items by the matrices' positions, as the task does
    texts = item_texts(catalog_in_order(validated_items, train.item_ids))
    emb, bias = text_matrix(item_text_embeddings, train.item_ids)
    untuned = TextEncoder(TextEncoderConfig(model_name=text_encoder.base_model, max_length=text_encoder.max_length))
    untuned_similarity = embedding_scorer(untuned.embed(texts))
    shares, counts = partner_shares(train.baskets)
    methods = {
        "fine_tuned_encoder": lambda items: emb[items] @ emb.T / text_encoder.temperature + bias[None, :],
        "untuned_encoder": untuned_similarity,
        "tfidf_titles": tfidf_scorer(texts),
        "popularity": popularity_scorer(counts),
        "fine_tuned_encoder+partners": twin_partners_scorer(embedding_scorer(emb), shares, counts, policy.n_twins,
                                                            policy.temperature),
        "untuned_encoder+partners": twin_partners_scorer(untuned_similarity, shares, counts, policy.n_twins,
                                                         policy.temperature),
        "fine_tuned_encoder+partners+prior": policy.scorer(embedding_scorer(emb), shares, counts),
    }
    rows = []
    for name, fn in methods.items():
        res = evaluate_cold(task, fn, tuple(config.ks)) if len(task.cold) else {}
        for k in config.ks:
            rows.append({"method": name, "k": k, "recall": res.get(f"recall@{k}", np.nan),
                         "ndcg": res.get(f"ndcg@{k}", np.nan), "n_items": res.get("n_users", 0)})
    table = pd.DataFrame(rows)
    return dg.Output(table, metadata={"cold_items": int(len(task.cold)), "prior_weight": policy.prior_weight,
                                      "prior_weight_from": policy.chosen_from,
                                      "at_k20": frame_table(table[table["k"] == 20], 100)})


def _strict_cold_start(context: dg.AssetExecutionContext, config: ColdStartConfig, training_split: Split,
                       validated_items: pd.DataFrame, interaction_matrices: SplitMatrices,
                       text_encoder: TextEncoderArtifact) -> dg.Output[pd.DataFrame]:
    """``cold_start_metrics`` on a split without a temporal cut: the strict form, over every row of the split."""
    from training.text_encoder import TextEncoderConfig

    rows = pd.concat([training_split.train, training_split.test], ignore_index=True)
    catalog = catalog_in_order(validated_items, interaction_matrices.train.item_ids)
    steps = config.strict_steps if config.strict_steps is not None else int(text_encoder.history.get("steps", 0))
    encoder_cfg = TextEncoderConfig(model_name=text_encoder.base_model, temperature=text_encoder.temperature,
                                    max_length=text_encoder.max_length, steps=steps,
                                    batch_size=config.strict_batch_size, seed=config.strict_seed)
    cfg = StrictColdStartConfig(holdout_fraction=config.strict_holdout_fraction, seed=config.strict_seed,
                                max_validation_items=config.strict_max_validation_items, ks=tuple(config.ks))
    why = f"no temporal cut (split {training_split.strategy!r}): strict cold start"

    def skipped(reason: str) -> dg.Output[pd.DataFrame]:
        context.log.warning(f"strict cold-start evaluation skipped: {reason}")
        return dg.Output(pd.DataFrame(columns=["method", "k", "recall", "ndcg", "n_items"]),
                         metadata={"form": why, "cold_items": 0, "skipped_because": reason})

    if not config.strict:
        return skipped("ColdStartConfig.strict is false (set it true to run the strict form)")
    try:
        result = run_strict_cold_start(rows, catalog, cfg, encoder_cfg, log=context.log.info)
    except ValueError as e:
        return skipped(str(e))
    table = method_table(result, tuple(config.ks))
    policy = result["partner_policy"]
    return dg.Output(table, metadata={
        "form": why, "cold_items": result["counts"]["scored_held_out_items"], **result["counts"],
        "fine_tuned": bool(result["encoder"]["fine_tuned"]), "fine_tuning_steps": steps,
        "prior_weight": policy["prior_weight"], "n_twins": policy["n_twins"], "temperature": policy["temperature"],
        "prior_weight_from": policy["chosen_from"],
        "at_k20": frame_table(table[table["k"] == 20], 100),
        "differences_at_k20": frame_table(difference_table(result), 100),
        "strict_cold_start": dg.MetadataValue.json({k: result[k] for k in ("methods", "differences", "counts",
                                                                            "partner_policy", "settings")})})
