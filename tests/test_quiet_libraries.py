"""Library noise is silenced where the libraries are called, and only that noise: a Lightning fit prints no
banners ("GPU available", tips) and raises none of the known notices, while other warnings still show."""
from __future__ import annotations

import logging
import warnings

import numpy as np

from training.models import IALSMatrixFactorization, LightGCN, MatrixFactorization
from training.models.lightning_utils import quiet_fit


def test_factor_fits_print_no_banners_and_raise_no_library_notices(shop_data, caplog, capsys):
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for model in (MatrixFactorization(dim=4, max_epochs=1, batch_size=4096),
                      IALSMatrixFactorization(dim=4, max_epochs=1), LightGCN(dim=4, max_epochs=1, batch_size=4096)):
            model.fit(shop_data)
            assert np.isfinite(model.score_users(np.arange(3))).any()
    text = caplog.text + capsys.readouterr().err
    assert "GPU available" not in text and "Tip:" not in text and "TPU available" not in text
    shown = [str(w.message) for w in caught]
    assert not [m for m in shown if "Sparse" in m or "IterableDataset" in m or "LeafSpec" in m], shown


def test_other_warnings_still_show_inside_a_fit():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_fit():
            warnings.warn("something the user must see", UserWarning)
    assert [str(w.message) for w in caught] == ["something the user must see"]
