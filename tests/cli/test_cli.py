"""The command line explains itself and reports errors without tracebacks."""

import re

import pytest

from stepjudge.cli.main import main


def test_top_level_help_lists_every_verb_and_no_stale_promise(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    ([a-z-]+)(?: +\S|$)", out, flags=re.M)  # a long name has its help below
    assert listed == ["annotate", "eval", "train", "serve", "models", "rerank", "select", "solve", "pipeline",
                      "critique-data", "refine"]
    assert "(soon)" not in out and "train stepwise judges" in out


@pytest.mark.parametrize("argv, expect", [
    (["eval", "processbench", "--help"],
     "F1 = their harmonic mean; the average is the mean of the subset F1s."),
    (["eval", "judge", "--help"], "--calibrate-on str with probabilities: also score held-out chunks"),
    (["serve", "--help"], "--port int TCP port (0: any free port) (default: 8000)"),
    (["models", "--help"], "list built-in model names"),
    (["models", "--help"], "resolve print the local checkpoint directory of a model"),
])
def test_verb_help_texts(argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert expect in " ".join(capsys.readouterr().out.split())


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "tiny-random" in out


def test_bad_config_file_is_a_clean_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("judge: [unclosed\n")
    assert main(["eval", "processbench", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "c.yaml" in err and "invalid YAML" in err


def test_unknown_model_is_a_clean_error(capsys, tmp_path):
    assert main(["models", "resolve", str(tmp_path / "nope")]) == 1
    assert "no model directory" in capsys.readouterr().err


def test_unknown_config_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("judge: smollm2-135m\nvotse: 3\n")
    assert main(["eval", "processbench", "--config", str(cfg)]) == 1
    assert "votse" in capsys.readouterr().err


def test_train_judge_data_builds_balanced_splits_by_problem(tmp_path, capsys):
    import json

    recs = []
    for p in range(5):  # 5 problems x 1 solution x 3 chunks; labels [1, 1, 0]
        recs.append({"problem_id": f"p{p}", "problem": f"Start with {p}.", "sample_index": 0, "status": "annotated",
                     "chunks": ["a", "b", "c"], "labels": {"abs-q": [1, 1, 0], "rel-ratio": [1, 0, 0],
                                                           "rel-effective": [1, 1, 0]}})
    ann = tmp_path / "annotations.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "jd"
    assert main(["train", "judge-data", "--annotations", str(ann), "--scheme", "abs-q", "--heldout-problems", "1",
                 "--tokenizer", "tiny-random", "--out", str(out)]) == 0
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    # 4 train problems: 8 positive, 4 negative -> balanced to 4 + 4; 1 held-out problem, unbalanced: 3 rows
    assert sorted(r["label"] for r in train) == ["Negative"] * 4 + ["Positive"] * 4
    assert len(held) == 3 and not {r["problem_id"] for r in held} & {r["problem_id"] for r in train}
    assert "wrote" in capsys.readouterr().out


def test_eval_judge_on_heldout_rows(tmp_path, capsys):
    import json

    rows = [{"prompt": [{"role": "user", "content": f"Is chunk {i} right?"}], "label": lab, "problem_id": f"p{i}",
             "chunk_index": 0, "sample_index": 0} for i, lab in enumerate(["Positive", "Negative", "Positive"])]
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "judge", "--judge", "tiny-random", "--data", str(data), "--response-prefix", "\\boxed{",
                 "--max-tokens", "3", "--engine.num-threads", "1", "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["n_positive"] == 2 and metrics["n_negative"] == 1
    assert len((tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()) == 3
    assert '"balanced_f1"' in capsys.readouterr().out
    assert main(["eval", "judge", "--judge", "tiny-random", "--data", str(data), "--response-prefix", "\\boxed{",
                 "--max-tokens", "3", "--engine.num-threads", "1", "--probabilities", "--calibrate-on", str(data),
                 "--out", str(tmp_path / "ev2")]) == 0
    metrics = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    preds = [json.loads(x) for x in (tmp_path / "ev2" / "predictions.jsonl").read_text().splitlines()]
    assert all(0 < p["p_positive"] < 1 for p in preds)
    # AUROC from its definition: the share of (Positive, Negative) pairs ranked right, ties half.
    pos = [p["p_positive"] for p in preds if p["label"] == "Positive"]
    neg = [p["p_positive"] for p in preds if p["label"] == "Negative"]
    pairs = [(a > b) + 0.5 * (a == b) for a in pos for b in neg]
    assert metrics["auroc"] == sum(pairs) / len(pairs)
    # Calibrated on the same rows: the cut is the one calibrate_threshold picks from these probabilities,
    # and held-out scores at that cut are the training scores.
    from stepjudge.eval.judge_heldout import judge_metrics
    from stepjudge.judge.scoring import calibrate_threshold

    cut = calibrate_threshold([p["p_positive"] for p in preds], [p["label"] == "Positive" for p in preds])
    cal = metrics["calibrated"]
    assert cal["threshold"] == cut and cal["n"] == 3
    expected = judge_metrics([p["label"] for p in preds],
                             ["Positive" if p["p_positive"] >= cut else "Negative" for p in preds])
    assert {k: cal[k] for k in expected} == expected
    assert cal["train_balanced_f1"] == expected["balanced_f1"]
