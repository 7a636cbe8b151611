"""The command line explains itself and reports errors without tracebacks."""

import pytest

from stepjudge.cli.main import main


@pytest.mark.parametrize("argv, expect", [
    (["--help"], "eval"),
    (["eval", "processbench", "--help"], "harmonic"),
    (["serve", "--help"], "--port"),
    (["models", "--help"], "resolve"),
])
def test_help_texts(argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert expect in capsys.readouterr().out


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
