"""The text encoder's ONNX export: same embeddings as torch; the int8 variant stays close."""
import numpy as np
import pytest


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from serving.text_onnx import export_text_encoder
    from training.text_encoder import default_model_path

    return default_model_path(), export_text_encoder(default_model_path(), tmp_path_factory.mktemp("text_onnx"))


TITLES = ["WHITE HANGING HEART T-LIGHT HOLDER", "red retrospot cake stand | category: kitchen",
          "set of 3 cake tins pantry design", "x", "a much longer title " * 20]


def test_fp32_export_matches_torch(exported):
    from serving.text_onnx import OnnxTextEncoder, torch_embed

    model_dir, export = exported
    ref = torch_embed(model_dir, TITLES)
    got = OnnxTextEncoder(export.fp32, provider="cpu").embed(TITLES, batch_size=2)  # batches of uneven length
    assert got.shape == (len(TITLES), 384)
    assert np.abs(got - ref).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_export_is_smaller_and_close(exported):
    from serving.text_onnx import OnnxTextEncoder, torch_embed

    model_dir, export = exported
    assert export.int8.stat().st_size < export.fp32.stat().st_size / 2
    ref = torch_embed(model_dir, TITLES)
    got = OnnxTextEncoder(export.int8, export.tokenizer_dir, provider="cpu").embed(TITLES)
    cosine = (ref * got).sum(axis=1)
    assert cosine.min() > 0.85, cosine
    # the nearest neighbour structure survives: each title is still closest to itself
    assert np.all(np.argmax(got @ ref.T, axis=1) == np.arange(len(TITLES)))
