"""Segmentation SFT with TRL: config checks, a tiny training run, resume, and the CLI verb."""

import json
import re

import pytest
import torch
from pydantic import ValidationError

from stepjudge.cli import main as cli_main
from stepjudge.errors import DataError
from stepjudge.policy import chunked_solver_messages
from stepjudge.tasks.arith import generate_problems, reference_solution
from stepjudge.train import SegmentSFTConfig, find_last_checkpoint, load_sft_records, train_segment
from stepjudge.train.segment import make_trainer
from stepjudge.utils.io import write_jsonl_atomic

torch.set_num_threads(1)


@pytest.fixture
def sft_data(tmp_path):
    path = tmp_path / "sft.jsonl"
    write_jsonl_atomic(path, [
        {"prompt": chunked_solver_messages(p.problem),
         "completion": [{"role": "assistant", "content": reference_solution(p)}]}
        for p in generate_problems(n=16, steps=2, seed=3)])
    return path


@pytest.fixture
def train_verb(monkeypatch):
    """The CLI with the ``train`` verb, whether or not main.VERB_MODULES lists it yet."""
    if "stepjudge.cli.train" not in cli_main.VERB_MODULES:
        monkeypatch.setattr(cli_main, "VERB_MODULES", (*cli_main.VERB_MODULES, "stepjudge.cli.train"))
    return cli_main.main


def test_config_defaults_follow_the_paper():
    cfg = SegmentSFTConfig(data="d.jsonl", out="o")
    assert cfg.model == "smollm2-135m" and cfg.learning_rate == 1e-5
    assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps == 32
    assert cfg.max_steps == -1 and cfg.epochs == 1 and cfg.max_length == 1024
    assert cfg.use_cpu == (not torch.cuda.is_available())
    with pytest.raises(ValidationError, match="lr"):
        SegmentSFTConfig(data="d", out="o", lr=1e-4)
    with pytest.raises(ValidationError, match="max_steps"):
        SegmentSFTConfig(data="d", out="o", max_steps=0)


@pytest.mark.parametrize("record, field", [
    ({"completion": [{"role": "assistant", "content": "x"}]}, "prompt"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant"}]}, "completion[0]"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "x"}]},
     "completion"),
])
def test_bad_training_records_name_file_line_field(tmp_path, sft_data, record, field):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(sft_data.read_text().splitlines()[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=re.escape(f"bad.jsonl:2 field '{field}'")):
        load_sft_records(bad)


def test_loss_is_on_the_completion_only(tmp_path, sft_data):
    trainer = make_trainer({"model": "tiny-random", "data": str(sft_data), "out": str(tmp_path / "run"),
                            "max_steps": 1, "use_cpu": True})
    row, tok = trainer.train_dataset[0], trainer.processing_class
    masked = [i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab == -100]
    trained = [lab for lab in row["labels"] if lab != -100]
    first = json.loads(sft_data.read_text().splitlines()[0])
    assert tok.decode(masked).endswith(first["prompt"][-1]["content"] + "<|im_end|>\n<|im_start|>assistant\n")
    # the tagged solution and the end-of-turn token (so the policy learns to stop)
    assert tok.decode(trained) == first["completion"][0]["content"] + "<|im_end|>\n"


def test_tiny_training_run_saves_a_loadable_model_and_resumes(tmp_path, sft_data):
    from stepjudge.engines.base import SamplingParams
    from stepjudge.engines.hf import HFEngine

    out = tmp_path / "run"
    cfg = {"model": "tiny-random", "data": str(sft_data), "out": str(out), "max_steps": 2,
           "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 256, "use_cpu": True}
    final = train_segment(cfg)
    assert final == out / "final" and (final / "model.safetensors").exists()
    log = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e] == [1, 2]
    assert find_last_checkpoint(out) == out / "checkpoint-2"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the shared finalisation's plot

    engine = HFEngine(str(final))
    (result,) = engine.generate(["<chunk>"], SamplingParams(max_tokens=4, temperature=0))
    assert result.completions[0].num_tokens == 4

    # A second call finds checkpoint-2 and continues to step 3 instead of starting over.
    train_segment({**cfg, "max_steps": 3})
    log2 = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log2 if "loss" in e] == [1, 2, 3]
    assert [e["loss"] for e in log2[:2]] == [e["loss"] for e in log[:2]]  # restored, not recomputed
    assert find_last_checkpoint(out) == out / "checkpoint-3"


def test_find_last_checkpoint_skips_torn_ones(tmp_path):
    assert find_last_checkpoint(tmp_path / "missing") is None
    for step, state in ((5, "{}"), (12, "{"), (40, None)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    assert find_last_checkpoint(tmp_path) == tmp_path / "checkpoint-5"


def test_cli_train_segment_merges_yaml_and_flags(tmp_path, monkeypatch, capsys, train_verb):
    import stepjudge.train.segment as seg

    seen = {}

    def fake_train(config):
        seen["config"] = config
        return tmp_path / "o" / "final"

    monkeypatch.setattr(seg, "train_segment", fake_train)
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("model: tiny-random\ndata: d.jsonl\nout: o\nlearning_rate: 2.0e-5\nsave_steps: 7\n")
    argv = ["train", "segment", "--config", str(yaml_path), "--learning-rate", "3e-5", "--max-steps", "4",
            "--no-use-cpu"]
    assert train_verb(argv) == 0
    cfg = seen["config"]
    assert (cfg.model, cfg.data, cfg.learning_rate, cfg.save_steps, cfg.max_steps, cfg.use_cpu) == (
        "tiny-random", "d.jsonl", 3e-5, 7, 4, False)
    assert "final" in capsys.readouterr().out


def test_cli_train_segment_needs_data_and_out(capsys, train_verb):
    assert train_verb(["train", "segment"]) == 1
    err = capsys.readouterr().err
    assert "data: Field required" in err and "out: Field required" in err


def test_cli_help(capsys, train_verb):
    for argv, expect in ((["train", "segment", "--help"], "resumes"),
                         (["train", "segment-data", "--help"], "--segmenter")):
        with pytest.raises(SystemExit) as e:
            train_verb(argv)
        assert e.value.code == 0 and expect in capsys.readouterr().out
