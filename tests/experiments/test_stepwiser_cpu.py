"""The StepWiser CPU experiment's bookkeeping: checkpoint pruning and the mean ± sd tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from experiment_modules import EXPERIMENTS, import_experiment


@pytest.fixture(scope="module")
def exp():
    yield from import_experiment("stepwiser_cpu")


def test_prune_keeps_final_and_unfinished_runs(exp, tmp_path):
    done, running = tmp_path / "arm" / "rl", tmp_path / "other" / "sft"
    for folder in (done / "checkpoint-10", done / "checkpoint-20", done / "final", running / "checkpoint-5"):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"x")
    assert exp.prune_checkpoints(tmp_path) == 2
    assert sorted(p.name for p in done.iterdir()) == ["final"]
    assert (running / "checkpoint-5" / "model.safetensors").exists()  # no final yet: still needed to resume


def test_chunk_table_means_and_sds_over_seeds(exp):
    runs = {"warmup-cot": [{"mc": {"balanced_f1": 70.0}, "train_wall_s": 600.0},
                           {"mc": {"balanced_f1": 80.0}, "train_wall_s": 1200.0}]}
    out = exp.table(runs, {"mc": 415, "mc_pos": 216, "mc_neg": 199, "truth": 386})
    assert out.startswith("Held-out chunks: 415 (216 Positive / 199 Negative by MC label); 386 with an exact")
    row = out.splitlines()[-1].split(" | ")
    assert row[0] == "| warmup-cot" and row[1] == "2"
    assert row[3] == "75 ± 7.1"  # balanced F1 vs MC: mean 75, sd sqrt(50)
    assert row[-1] == "15 ± 7.1 |"  # minutes
    assert row[2] == "n/a"  # no accuracy recorded


def test_downstream_table_reads_chunk_reset_best_of_n_and_selection(exp):
    m = {"chunk_reset": {"accuracy": 0.3, "mean_accepted_tokens": 40.0, "mean_rejected_tokens": 12.5},
         "best_of_n": {"4": {"first": 0.25, "majority": 0.3, "best_of_n": 0.35, "weighted": 0.4}},
         "selection": {"policies": {"base": {"accuracy": 0.2}, "judge": {"accuracy": 0.3},
                                    "outcome": {"accuracy": 0.25}}}}
    out = exp.downstream_table({"stepwiser-cot": [m], "no-judge": [{"chunk_reset": {"accuracy": 0.2}}]}, [4], 200)
    header, _, judged, plain = out.splitlines()[2:]
    assert header.split(" | ")[-3:] == ["policy before SFT (%)", "SFT judge-selected (%)", "SFT outcome-only (%) |"]
    assert judged == "| stepwiser-cot | 1 | 30 | 40 | 12.5 | 25 | 30 | 35 | 40 | 20 | 30 | 25 |"
    assert plain == "| no-judge | 1 | 20 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"


def test_answer_rows_are_scored_apart_and_tabled(exp):
    rows = [{"label": "Positive", "truth": "Positive"}, {"label": "Negative", "truth": "Negative"},
            {"label": "Negative", "truth": "Negative", "step": "answer"},
            {"label": "Positive", "truth": None, "step": "answer"}]
    preds = [{"verdict": "Positive"}, {"verdict": "Positive"}, {"verdict": "Negative"}, {"verdict": "Negative"}]
    ans, chunks = exp.step_metrics(rows, preds, "answer"), exp.step_metrics(rows, preds, "chunk")
    assert (ans["mc"]["n"], ans["mc"]["acc_negative"], ans["mc"]["acc_positive"]) == (2, 100.0, 0.0)
    assert ans["truth"]["n"] == 1 and ans["truth"]["acc_negative"] == 100.0
    assert (chunks["mc"]["acc_positive"], chunks["mc"]["acc_negative"]) == (100.0, 0.0)
    out = exp.table({"a": [{"answers": {"truth": {"balanced_f1": 90.0}}, "chunks": {"truth": {"balanced_f1": 80.0}}}]},
                    {"mc": 4, "mc_pos": 1, "mc_neg": 3, "truth": 3})
    assert out.splitlines()[2].endswith("| answers: bal. F1 vs MC | answers: bal. F1 vs truth | chunks: bal. F1 vs truth |")
    assert out.splitlines()[-1].endswith("| n/a | 90 | 80 |")
    assert "answers:" not in exp.table({"a": [{}]}, {"mc": 4, "mc_pos": 1, "mc_neg": 3, "truth": 3})


def test_untrained_arm_is_scored_once_and_reused_by_later_seeds(exp, tmp_path):
    """The untrained judge decodes greedily: every seed would repeat the same verdicts, so seed 1
    reuses seed 0's scores (and says where they came from) instead of re-scoring ~10 minutes."""
    import json

    from stepjudge.utils.io import write_jsonl_atomic

    data = tmp_path / "data" / "balanced"
    data.mkdir(parents=True)
    write_jsonl_atomic(data / "heldout.jsonl", [{"label": "Positive", "prompt": "p", "problem_id": "a"}])
    first = tmp_path / "seed0" / "untrained-cot"
    first.mkdir(parents=True)
    scored = {"arm": "untrained-cot", "seed": 0, "model": "smollm2-135m",
              "mc": {"balanced_f1": 0.0, "auroc": 0.61}, "truth": {"balanced_f1": 0.0}}
    (first / "metrics.json").write_text(json.dumps(scored))
    cfg = exp.ExperimentConfig(annotations=str(tmp_path / "unused.jsonl"))
    got = exp.run_arm("untrained-cot", cfg, {"balanced": data}, 1, tmp_path / "seed1" / "untrained-cot")
    assert got == {**scored, "seed": 1, "scored_in": str(first)}
    assert json.loads((tmp_path / "seed1" / "untrained-cot" / "metrics.json").read_text()) == got
    # a finished arm that already has its AUROC is returned as it is, without loading any model
    assert exp.run_arm("untrained-cot", cfg, {"balanced": data}, 0, first) == scored


def test_archived_annotation_is_unpacked_byte_for_byte_and_damage_is_refused(exp, tmp_path):
    import gzip

    from stepjudge.errors import DataError

    text = '{"problem_id": "a", "chunks": []}\n{"problem_id": "b", "chunks": []}\n'
    good = tmp_path / "good.jsonl.gz"
    good.write_bytes(gzip.compress(text.encode(), mtime=0))
    cache = tmp_path / "cache" / "k" / "annotations.jsonl"
    exp.unpack_annotations(good, cache)
    assert cache.read_text() == text

    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"problem_id": "a"}\n{"problem_id": \n', mtime=0))
    target = tmp_path / "cache2" / "annotations.jsonl"
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:2"):
        exp.unpack_annotations(bad, target)
    assert not target.exists() and list(target.parent.iterdir()) == []  # nothing half-written left behind


def test_a_fresh_clone_reuses_the_archived_annotation_instead_of_annotating(exp, tmp_path):
    text = '{"problem_id": "p0", "chunks": []}\n'
    done = tmp_path / "done.jsonl"
    done.write_text(text)
    recipe = str(EXPERIMENTS / "annotate_arith_mc.yaml")
    cfg = exp.ExperimentConfig(annotate=recipe, annotations=str(done), annotation_archive=str(tmp_path / "arch"))
    archived = exp.archive_annotations(cfg)
    assert archived.parent == tmp_path / "arch" and archived.name.endswith(".jsonl.gz")
    assert exp.archive_annotations(cfg).read_bytes() == archived.read_bytes()  # deterministic bytes

    fresh = exp.ExperimentConfig(annotate=recipe, cache_dir=str(tmp_path / "cache"),
                                 annotation_archive=str(tmp_path / "arch"))
    resolved = exp.ensure_annotations(fresh)  # would annotate 400 problems if the archive were not used
    assert Path(resolved.annotations).read_text() == text
    assert Path(resolved.annotations).parent.name == archived.name.removesuffix(".jsonl.gz")


def test_every_config_field_is_a_flag_over_the_yaml(exp, tmp_path):
    from common import experiment_config, experiment_parser

    yaml = tmp_path / "exp.yaml"
    yaml.write_text("arms: [warmup-cot, disc-prm]\nrl: {max_steps: 20, beta: 0.0}\n"
                    "downstream: {arms: [stepwiser-cot]}\n")
    parser = experiment_parser(None, exp.ExperimentConfig)
    args = parser.parse_args(["--config", str(yaml), "--seeds", "1", "2", "--downstream.methods", '["chunk-reset"]',
                              "--downstream.arms", '["stepwiser-cot-unbal"]', "--eval-max-tokens", "32"])
    cfg = experiment_config(args)
    assert args.seeds == [1, 2]
    assert cfg.arms == ["warmup-cot", "disc-prm"] and cfg.rl == {"max_steps": 20, "beta": 0.0}  # from the YAML
    assert cfg.downstream.methods == ["chunk-reset"] and cfg.downstream.arms == ["stepwiser-cot-unbal"]
    assert cfg.eval_max_tokens == 32
    from stepjudge.config import ConfigError

    with pytest.raises(ConfigError, match="downstream.methods"):  # a method that does not exist, named
        experiment_config(parser.parse_args(["--downstream.methods", '["beam-search"]']))


def test_downstream_runs_only_the_methods_a_seed_lacks(exp, tmp_path):
    import json

    cfg = exp.ExperimentConfig(out=str(tmp_path), downstream={"arms": ["stepwiser-cot-unbal"],
                                                               "methods": ["chunk-reset"]})
    (tmp_path / "seed1" / "no-judge").mkdir(parents=True)
    (tmp_path / "seed1" / "no-judge" / "downstream.json").write_text('{"chunk_reset": {"accuracy": 0.25}}')
    arm = tmp_path / "seed1" / "stepwiser-cot-unbal"
    arm.mkdir()
    (arm / "downstream.json").write_text('{"chunk_reset": {"accuracy": 0.5}, "wall_s": 700.0}')
    # no model or metrics.json exists: any generation attempted here would fail
    got = exp.run_downstream(cfg, 1, tmp_path)
    assert got == {"no-judge": {"chunk_reset": {"accuracy": 0.25}},
                   "stepwiser-cot-unbal": {"chunk_reset": {"accuracy": 0.5}, "wall_s": 700.0}}
    both = cfg.model_copy(update={"downstream": cfg.downstream.model_copy(update={"methods": ["chunk-reset",
                                                                                             "best-of-n"]})})
    with pytest.raises(FileNotFoundError):  # best-of-n is missing, so it tries to load the arm's judge
        exp.run_downstream(both, 1, tmp_path)
    assert json.loads((arm / "downstream.json").read_text())["chunk_reset"] == {"accuracy": 0.5}  # untouched
