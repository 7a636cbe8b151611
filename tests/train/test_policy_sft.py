"""Policy SFT on selected samples: row checks, completion-only loss, a 2-step tiny run, the CLI."""

import json
import re

import pytest
import torch
from pydantic import ValidationError

from stepjudge.errors import DataError
from stepjudge.tasks.arith import fewshot_prompt, generate_problems, reference_solution
from stepjudge.train.policy_sft import PolicySFTConfig, load_policy_rows, make_trainer, train_policy_sft
from stepjudge.utils.io import write_jsonl_atomic

torch.set_num_threads(1)


@pytest.fixture
def rows_file(tmp_path):
    """Rows shaped like `stepjudge select build` output (extra tracing fields included)."""
    path = tmp_path / "sft_judge.jsonl"
    write_jsonl_atomic(path, [{"prompt": fewshot_prompt(p), "completion": reference_solution(p),
                               "problem_id": p.id, "sample_index": 0, "score": 0.9}
                              for p in generate_problems(n=8, steps=2, seed=5)])
    return path


def test_config_defaults_and_typos():
    cfg = PolicySFTConfig(data="d.jsonl", out="o")
    assert cfg.model == "smollm2-135m" and cfg.learning_rate == 1e-5
    assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps == 32
    with pytest.raises(ValidationError, match="lr"):
        PolicySFTConfig(data="d", out="o", lr=1e-4)


@pytest.mark.parametrize("record, field", [
    ({"completion": "x"}, "prompt"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": "x"}, "prompt"),
    ({"prompt": "q", "completion": "  "}, "completion"),
])
def test_bad_rows_name_file_line_field(tmp_path, rows_file, record, field):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(rows_file.read_text().splitlines()[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=re.escape(f"bad.jsonl:2 field '{field}'")):
        load_policy_rows(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no training rows"):
        load_policy_rows(empty)


def test_loss_is_on_the_completion_only(tmp_path, rows_file):
    trainer = make_trainer({"model": "tiny-random", "data": str(rows_file), "out": str(tmp_path / "run"),
                            "max_steps": 1, "use_cpu": True})
    assert trainer.train_dataset.column_names.count("problem_id") == 0  # tracing fields dropped
    row, tok = trainer.train_dataset[0], trainer.processing_class
    masked = [i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab == -100]
    trained = [lab for lab in row["labels"] if lab != -100]
    first = json.loads(rows_file.read_text().splitlines()[0])
    assert tok.decode(masked) == first["prompt"]
    assert tok.decode(trained) == first["completion"] + tok.eos_token  # the policy learns to stop


def test_two_steps_change_the_weights_and_save_final(tmp_path, rows_file):
    from transformers import AutoModelForCausalLM

    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.hf import HFEngine
    from stepjudge.models.registry import resolve_model

    out = tmp_path / "run"
    final = train_policy_sft({"model": "tiny-random", "data": str(rows_file), "out": str(out), "max_steps": 2,
                              "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 256,
                              "learning_rate": 1e-3, "use_cpu": True})
    assert final == out / "final" and (final / "model.safetensors").exists()
    assert (final / "tokenizer_config.json").exists() and (out / "checkpoint-2").is_dir()
    log = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e] == [1, 2]

    before = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random"), dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    (res,) = HFEngine(str(final)).generate(["Start with 1. Add 1.\n"], SamplingParams(max_tokens=3, temperature=0))
    assert res.completions[0].num_tokens >= 1


def test_cli_select_train_merges_yaml_and_flags(tmp_path, monkeypatch, capsys):
    import stepjudge.train.policy_sft as mod
    from stepjudge.cli.main import main

    seen = {}

    def fake_train(config):
        seen["config"] = config
        return tmp_path / "o" / "final"

    monkeypatch.setattr(mod, "train_policy_sft", fake_train)
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("model: tiny-random\ndata: d.jsonl\nout: o\nlearning_rate: 2.0e-5\nsave_steps: 7\n")
    assert main(["select", "train", "--config", str(yaml_path), "--learning-rate", "3e-5", "--max-steps", "4",
                 "--data", "sft_outcome.jsonl"]) == 0
    cfg = seen["config"]
    assert (cfg.model, cfg.data, cfg.learning_rate, cfg.save_steps, cfg.max_steps) == (
        "tiny-random", "sft_outcome.jsonl", 3e-5, 7, 4)
    assert "final" in capsys.readouterr().out
    assert main(["select", "train"]) == 1
    err = capsys.readouterr().err
    assert "data: Field required" in err and "out: Field required" in err
