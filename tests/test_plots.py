"""The metrics plot the UI and the answers report show: one colour per model, and a size that fits a dialog."""
import io

import numpy as np
import pandas as pd

from training.plots import metrics_vs_k_png, model_styles

MODELS = ["popularity", "association_rules", "itemknn", "ease", "gf_cf", "chebycf", "mf", "ials", "lightgcn",
          "blend", "hybrid", "sansa"]


def test_every_model_has_its_own_colour():
    styles = model_styles(MODELS)
    colours = [tuple(np.round(s["color"], 3)) for s in styles.values()]
    assert len(set(colours)) == len(MODELS)  # twelve models, twelve colours (the default cycle has ten)


def test_the_metrics_plot_fits_the_metadata_dialog():
    from PIL import Image

    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"model": m, "k": k, "recall": rng.random(), "ndcg": rng.random(),
                           "precision": rng.random(), "coverage": rng.random()} for m in MODELS for k in (10, 20, 50)])
    width, height = Image.open(io.BytesIO(metrics_vs_k_png(table))).size
    assert width <= 800 and height <= 600
