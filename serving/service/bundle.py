"""The serving bundle: everything one served version needs, in one folder logged with its registered version.

Layout (item order: the model's, ``items.parquet`` row i = model item i)::

    bundle.json        family, format ("onnx" or "native"), model file, what the score means, sizes
    model.onnx         an ONNX export (serving.onnx_export), or model.pkl for a model ONNX cannot express
    items.parquet      item_id, title, category, brand, price, in_stock (the catalog fields present)
    baskets.npz        (n_baskets, n_items) 0/1 CSR: the training baskets, for evidence and new-item partners
    user_items.npz     (n_users, n_items) 0/1 CSR: the training histories of known (pseudonymised) customers
    user_ids.json      (n_users,) their ids
    text/              the exported text encoder (model.onnx + tokenizer) and embeddings.npy (n_items, d)

The bundle is read by the service only; the pickle of a native model is loaded from the registry the
deployment trusts, never from a request."""
from __future__ import annotations

import json
import pickle
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.data import InteractionData

CATALOG_FIELDS = ("title", "category", "brand", "price", "in_stock")
# what each family's score is, for the response's ``ranked_by`` (the list's order follows it, not the evidence)
SCORE_MEANING = {
    "popularity": "how many customers bought the item",
    "association_rules": "the lift of association rules from the items given",
    "itemknn": "item-kNN similarity (customers who bought one also bought the other)",
    "ease": "EASE item-item weights learnt from every customer's history",
    "gf_cf": "graph-filter (GF-CF) smoothing of the purchase graph",
    "chebycf": "ChebyCF graph filter of the purchase graph",
    "mf": "matrix-factorisation affinity", "ials": "implicit-ALS factor affinity",
    "lightgcn": "LightGCN embedding affinity",
    "blend": "a tuned blend of item-item models' scores",
    "hybrid": "a tuned hybrid of collaborative scores, association lift, text, trend and category signals",
}


@dataclass
class BundleInfo:
    family: str
    format: str  # "onnx" | "native"
    model_file: str
    n_items: int
    n_users: int
    n_baskets: int
    score_meaning: str
    text: dict = field(default_factory=dict)  # {"model": file, "max_length": n} when a text encoder is bundled
    built_at: str = ""
    source: dict = field(default_factory=dict)  # e.g. {"registered_model": "cobuy-itemknn", "version": "3"}


def catalog_columns(catalog: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """The catalog's served fields for ``item_ids`` (n_items,), in that order; missing items get empty fields."""
    cat = catalog.assign(item_id=catalog["item_id"].astype(str)).drop_duplicates("item_id").set_index("item_id")
    out = pd.DataFrame({"item_id": pd.array(np.asarray(item_ids).astype(str), dtype="string")})
    for name in CATALOG_FIELDS:
        if name in cat:
            out[name] = cat[name].reindex(out["item_id"].astype(str)).values
    return out


def write_bundle(folder: str | Path, family: str, data: InteractionData, catalog: pd.DataFrame,
                 onnx_path: str | Path | None = None, native_model: object | None = None,
                 text_dir: str | Path | None = None, text_model: str | None = None,
                 text_embeddings: np.ndarray | None = None, text_max_length: int = 64,
                 partner_policy: dict | None = None, partner_prior: np.ndarray | None = None,
                 source: dict | None = None, score_meaning: str | None = None) -> BundleInfo:
    """Write a bundle for a model fitted on ``data`` into ``folder`` (created). Exactly one of ``onnx_path``
    (an export; its external data files are copied beside it) and ``native_model`` (pickled). ``text_dir``:
    a folder holding the text encoder export ``text_model`` (file name) and its tokenizer;
    ``text_embeddings`` (n_items, d) the catalog's embeddings by that encoder, in ``data``'s item order;
    ``partner_policy`` ({n_twins, temperature, prior_weight}) and ``partner_prior`` ((n_items,)): how new items'
    partners are scored (``training.cold_start.PartnerPolicy``; absent: 20 twins, temperature 0.1, no prior)."""
    if (onnx_path is None) == (native_model is None):
        raise ValueError("write_bundle: give exactly one of onnx_path (an ONNX export) and native_model")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if onnx_path is not None:
        onnx_path = Path(onnx_path)
        for extra in onnx_path.parent.glob(f"{onnx_path.name}.*.data"):
            shutil.copy2(extra, folder / extra.name)  # the export names its weights file; keep that name
        shutil.copy2(onnx_path, folder / "model.onnx")
        fmt, model_file = "onnx", "model.onnx"
    else:
        with open(folder / "model.pkl", "wb") as fh:
            pickle.dump(native_model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fmt, model_file = "native", "model.pkl"
    catalog_columns(catalog, data.item_ids).to_parquet(folder / "items.parquet", index=False)
    sp.save_npz(folder / "baskets.npz", data.baskets.tocsr().astype(np.float32))
    sp.save_npz(folder / "user_items.npz", data.user_items.tocsr().astype(np.float32))
    (folder / "user_ids.json").write_text(json.dumps([str(u) for u in data.user_ids]))
    text = {}
    if text_dir is not None and text_model is not None and text_embeddings is not None:
        if len(text_embeddings) != data.n_items:
            raise ValueError(f"text_embeddings has {len(text_embeddings)} rows for {data.n_items} items")
        skip = lambda _dir, names: [n for n in names if n.endswith((".onnx", ".data")) and n != text_model]  # noqa: E731
        shutil.copytree(text_dir, folder / "text", dirs_exist_ok=True, ignore=skip)
        np.save(folder / "text" / "embeddings.npy", np.asarray(text_embeddings, np.float32))
        text = {"model": text_model, "max_length": int(text_max_length)}
        if partner_policy is not None:
            text["partner_policy"] = dict(partner_policy)
            if partner_prior is not None:
                np.save(folder / "text" / "partner_prior.npy", np.asarray(partner_prior, np.float32))
    info = BundleInfo(family, fmt, model_file, data.n_items, data.n_users, int(data.baskets.shape[0]),
                      score_meaning or SCORE_MEANING.get(family, f"the {family} model's score"), text,
                      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), dict(source or {}))
    (folder / "bundle.json").write_text(json.dumps(asdict(info), indent=1))
    return info


def read_info(folder: str | Path) -> BundleInfo:
    """The ``bundle.json`` of ``folder``; ValueError naming the folder when it is not a serving bundle."""
    path = Path(folder) / "bundle.json"
    if not path.exists():
        raise ValueError(f"{folder}: not a serving bundle (no bundle.json); register it with "
                         "serving.registry.register_serving_version")
    return BundleInfo(**json.loads(path.read_text()))
