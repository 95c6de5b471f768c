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


def test_long_fits_report_progress_through_the_given_log():
    import lightning as L
    import torch

    from training.models.lightning_utils import LogProgress

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            loss = self.w(batch).pow(2).mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    said: list[str] = []
    data = torch.utils.data.DataLoader(torch.randn(40, 2), batch_size=2)
    with quiet_fit():
        trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                            enable_model_summary=False, callbacks=[LogProgress(said.append, "tiny", times=4)])
        trainer.fit(Tiny(), data)
    assert said[0] == "tiny: 20 steps planned"
    assert said[-1].startswith("tiny: step 20/20") and "train_loss" in said[-1]
    assert 4 <= len(said) <= 6  # about `times` reports, not one per step
