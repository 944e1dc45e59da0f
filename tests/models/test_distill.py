"""`augury distill lm` (augury/models/distill.py): the trainable model against the inference
model, the training signal, and a student folder that Augury loads and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from augury.cli.main import main
from augury.llm.engine import load_model_and_tokenizer
from augury.models.config import LoadedModel
from augury.models.distill import (
    DISTILL_KEY,
    DistillConfig,
    TrainableLlama,
    bbc_token_chunks,
    distill,
    pick_layers,
    save_student,
)
from augury.models.evaluate import prefill_logits
from augury.models.llama import LlamaModel
from augury.models.tokenizer import Tokenizer

TEXT = "The quick brown fox jumps over the lazy dog. Then it ran far away into the forest."


def test_trainable_llama_computes_what_the_inference_model_does(
    weights: LoadedModel, model_fp32: LlamaModel, tokenizer: Tokenizer
) -> None:
    """With every teacher block, the training-side model (SDPA, no cache) gives the logits of
    the paged inference model, which other tests hold against transformers."""
    layers = list(range(weights.config.num_layers))
    full = TrainableLlama.from_teacher(weights.config, weights.tensors, layers)
    ids = tokenizer.encode(TEXT)
    with torch.no_grad():
        got = full(torch.tensor([ids]))[0]
    want = prefill_logits(model_fp32, [ids])[0]
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def test_pick_layers_spreads_blocks_and_keeps_both_ends() -> None:
    assert pick_layers(30, 1) == [0]
    assert pick_layers(30, 2) == [0, 29]
    assert pick_layers(30, 4) == [0, 10, 19, 29]
    with pytest.raises(ValueError, match="1 to 30 layers"):
        pick_layers(30, 31)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        DistillConfig(steps=0)


@pytest.fixture(scope="module")
def trained(
    weights: LoadedModel, tokenizer: Tokenizer
) -> tuple[TrainableLlama, object, DistillConfig]:
    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    config = DistillConfig(layers=2, steps=8, batch_size=4, seq_len=32, lr=1e-3, eval_tokens=64)
    chunks = bbc_token_chunks(encode, config.seq_len, held_out=False)[:64]
    held_out = bbc_token_chunks(encode, config.seq_len, held_out=True)[:2]
    student, report = distill(weights, encode, config, None, chunks, held_out)
    return student, report, config


def test_distillation_lowers_the_kl_to_the_teacher(trained: tuple) -> None:  # type: ignore[type-arg]
    student, report, _ = trained
    assert report.student_layers == [0, 29] and report.teacher_layers == 30
    assert report.loss_last < 0.5 * report.loss_first  # a two-block start is far off at first
    assert 0.0 <= report.agreement_before <= report.agreement_after <= 1.0
    # Only the blocks and the final norm learn; the shared embedding / LM head stay the teacher's.
    assert report.student_parameters == sum(
        p.numel() for n, p in student.named_parameters() if "embed" not in n
    )


def test_student_folder_loads_and_runs_in_the_engine(
    trained: tuple,  # type: ignore[type-arg]
    tokenizer: Tokenizer,
    tmp_path: Path,
) -> None:
    student, report, config = trained
    out = save_student(student, report, config, tmp_path / "draft")
    tokenizer.save(out)
    record = json.loads((out / "config.json").read_text())
    assert record["num_hidden_layers"] == 2 and record[DISTILL_KEY]["report"]["steps"] == 8
    model, loaded_tokenizer = load_model_and_tokenizer(str(out), torch.float32, "cpu")
    assert len(model.blocks()) == 2 and loaded_tokenizer.encode(TEXT) == tokenizer.encode(TEXT)
    ids = tokenizer.encode(TEXT)
    with torch.no_grad():
        want = student.float()(torch.tensor([ids]))[0]  # what was trained, in float32
    got = prefill_logits(model, [ids])[0]  # the saved bfloat16 weights, in the engine
    same = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert same > 0.9, same


def test_cli_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("taken")
    assert main(["distill", "lm", str(tmp_path), "--steps", "1"]) == 2


def test_cli_trains_and_writes_a_student_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "draft"
    args = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--eval-tokens", "32"]
    assert main(["distill", "lm", str(out), *args]) == 0
    printed = capsys.readouterr().out
    assert "greedy agreement with the teacher" in printed and "step 2/2" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert json.loads((out / "config.json").read_text())[DISTILL_KEY]["config"]["seq_len"] == 16
