"""Discriminative "+"/"-" judge SFT: data checks, loss mask, a tiny run, the CLI verb."""

import json

import pytest
import torch
from pydantic import ValidationError

from stepjudge.cli import main as cli_main
from stepjudge.errors import DataError
from stepjudge.judge.dataset import to_discriminative_sft_rows
from stepjudge.train.disc_sft import DiscSFTConfig, load_disc_rows, make_trainer, train_disc_sft
from stepjudge.utils.io import write_jsonl_atomic

torch.set_num_threads(1)


def _rec(pid, chunks, labels):
    return {"problem_id": pid, "problem": f"Compute {pid}.", "sample_index": 0, "status": "annotated",
            "chunks": chunks, "labels": {"rel-effective": labels}}


RECORDS = [_rec("2+3*4", ["3*4=12.", "2+12=15."], [1, 0]), _rec("7-2", ["7-2=5."], [1]),
           _rec("6/3+1", ["6/3=2.", "2+1=3.", "So 3."], [1, 1, 1]), _rec("5*5", ["5*5=20."], [0])]


@pytest.fixture
def rows_path(tmp_path):
    path = tmp_path / "disc.jsonl"
    write_jsonl_atomic(path, to_discriminative_sft_rows(RECORDS))
    return path


@pytest.fixture
def train_verb(monkeypatch):
    if "stepjudge.cli.train" not in cli_main.VERB_MODULES:
        monkeypatch.setattr(cli_main, "VERB_MODULES", (*cli_main.VERB_MODULES, "stepjudge.cli.train"))
    return cli_main.main


def test_config_defaults_and_bad_rows(tmp_path, rows_path):
    cfg = DiscSFTConfig(train_data="d", out="o")
    assert (cfg.model, cfg.learning_rate, cfg.max_length) == ("smollm2-135m", 1e-5, 2048)
    assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps == 32
    with pytest.raises(ValidationError):
        DiscSFTConfig(train_data="d", out="o", lr=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(rows_path.read_text().splitlines()[0] + "\n"
                   + json.dumps({"messages": [{"role": "user", "content": "x"},
                                              {"role": "assistant", "content": "yes"}]}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:2 field 'messages\\[1\\]'"):
        load_disc_rows(bad)


def test_loss_only_on_verdicts(tmp_path, rows_path):
    trainer = make_trainer({"model": "tiny-random", "train_data": str(rows_path), "out": str(tmp_path / "r"),
                            "max_steps": 1, "use_cpu": True})
    row, tok = trainer.train_dataset[0], trainer.processing_class
    ids = row["input_ids"]
    mask = row["assistant_masks"] if "assistant_masks" in row else [int(x != -100) for x in row["labels"]]
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "+<|im_end|>-<|im_end|>"


def test_tiny_run_saves_loadable_changed_model(tmp_path, rows_path, train_verb, capsys):
    from transformers import AutoModelForCausalLM

    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.hf import HFEngine
    from stepjudge.models.registry import resolve_model

    out = tmp_path / "run"
    argv = ["train", "disc-sft", "--model", "tiny-random", "--train-data", str(rows_path), "--out", str(out),
            "--max-steps", "2", "--per-device-batch-size", "2", "--gradient-accumulation-steps", "1",
            "--max-length", "512", "--learning-rate", "1e-3", "--use-cpu"]
    assert train_verb(argv) == 0
    final = out / "final"
    assert "final" in capsys.readouterr().out and (final / "model.safetensors").exists()
    log = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e] == [1, 2]
    templates = [f.read_text() for f in final.iterdir() if f.name in ("chat_template.jinja",
                                                                     "tokenizer_config.json")]
    assert templates and not any("{% generation %}" in t for t in templates)  # original template kept

    before = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random"), dtype=torch.float32)
    after = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    b, a = before.state_dict(), after.state_dict()
    assert any(not torch.equal(b[k], a[k]) for k in b)

    engine = HFEngine(str(final))
    (res,) = engine.generate([to_discriminative_sft_rows(RECORDS)[0]["messages"][:1]],
                             SamplingParams(max_tokens=2, temperature=0))
    assert res.completions[0].num_tokens >= 1

    # a second run with the same out resumes from checkpoint-2 instead of starting over
    train_disc_sft({"model": "tiny-random", "train_data": str(rows_path), "out": str(out), "max_steps": 3,
                    "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 512,
                    "learning_rate": 1e-3, "use_cpu": True})
    log2 = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log2 if "loss" in e] == [1, 2, 3]
    assert [e["loss"] for e in log2[:2]] == [e["loss"] for e in log[:2]]


def test_cli_help(capsys, train_verb):
    with pytest.raises(SystemExit):
        train_verb(["train", "disc-sft", "--help"])
    assert "assistant" in capsys.readouterr().out
