"""The text encoder in ONNX: tokenizer outside, encoder + mean pooling + L2 normalisation inside.

``export_text_encoder`` writes ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, int64 (B, T);
output ``embedding`` float32 (B, hidden), unit length) and, with ``quantize=True``, ``model.int8.onnx``
by ONNX Runtime's dynamic quantisation (int8 weights of the MatMuls, activations quantised on the fly).
``OnnxTextEncoder`` runs either with the tokenizer saved beside it.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from serving.onnx_scoring import open_session
from cobuy_files.storage import atomic_path


class PooledEncoder(torch.nn.Module):
    """A Hugging Face encoder followed by attention-masked mean pooling and L2 normalisation."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


@dataclass
class TextExport:
    fp32: Path
    int8: Path | None
    tokenizer_dir: Path


# onnxruntime's quantizer logs this on the root logger for every model; its pre-processing (shape inference and
# graph optimisation) is for static quantization of vision models, and the int8 export's accuracy is measured
# (tests/test_onnx_text.py, benchmarks/results/serving-text-online_retail.json)
QUANT_PREPROCESS_HINT = "Please consider to run pre-processing before quantization"


@contextmanager
def _without_root_log(prefix: str) -> Iterator[None]:
    """Drop root-logger records starting with ``prefix`` while the block runs; every other record passes."""
    def drop(record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def export_text_encoder(model_dir: str | Path, out_dir: str | Path, quantize: bool = True,
                        max_length: int = 64) -> TextExport:
    """Export the Hugging Face encoder in ``model_dir`` (a fine-tuned folder or a base model) to ONNX."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load: noise in a pipeline's log

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = AutoModel.from_pretrained(str(model_dir)).eval()
    wrapped = PooledEncoder(encoder).eval()
    sample = tokenizer(["a red ceramic mug", "twelve pencils, assorted colours"], padding=True,
                       truncation=True, max_length=max_length, return_tensors="pt")
    fp32 = out_dir / "model.onnx"
    # TracerWarning: tracing turns the encoder's Python-level shape checks into constants of the traced sample's
    # shape; "Exporting aten::index": advanced indexing becomes Gather/Reshape, wrong only for negative indices,
    # which the position ids never are. The graph's axes are declared dynamic below and its embeddings are checked
    # against the encoder's (tests/test_onnx_text.py), so these warnings (a dozen per export) say nothing here
    with atomic_path(fp32) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(wrapped, (sample["input_ids"], sample["attention_mask"]), str(tmp), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                          opset_version=17)
    tokenizer.save_pretrained(out_dir)
    int8 = None
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = out_dir / "model.int8.onnx"
        with atomic_path(int8) as tmp, _without_root_log(QUANT_PREPROCESS_HINT):
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
    return TextExport(fp32, int8, out_dir)


class OnnxTextEncoder:
    """Titles -> (n, hidden) float32 unit embeddings with ONNX Runtime."""

    def __init__(self, model_path: str | Path, tokenizer_dir: str | Path | None = None, provider: str = "auto",
                 max_length: int = 64, threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        self.path = Path(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or self.path.parent))
        self.session = open_session(self.path, provider, threads)
        self.active_provider = self.session.get_providers()[0]
        self.max_length = max_length

    def embed(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            tok = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feeds = {"input_ids": tok["input_ids"].astype(np.int64),
                     "attention_mask": tok["attention_mask"].astype(np.int64)}
            out.append(self.session.run(["embedding"], feeds)[0])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def torch_embed(model_dir: str | Path, texts: list[str], batch_size: int = 256, max_length: int = 64) -> np.ndarray:
    """The reference: the same pooling in torch eager mode."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load: noise in a pipeline's log

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    wrapped = PooledEncoder(AutoModel.from_pretrained(str(model_dir)).eval()).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tok = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            out.append(wrapped(tok["input_ids"], tok["attention_mask"]).numpy())
    return np.concatenate(out).astype(np.float32)
