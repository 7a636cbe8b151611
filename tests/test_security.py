"""Security properties a user relies on: model text is never executed, configs are parsed safely, no shell,
no remote code, result files as readable as the user's umask says, data names that cannot leave the data
folder, and no pickle checkpoint loaded without an explicit opt-in."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from stepjudge.errors import DataError

PACKAGE = Path(__file__).resolve().parents[1] / "stepjudge"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    """``eval``, ``yaml.load``, ``subprocess.run``...: the dotted name a call is made through."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _findings(check) -> list[str]:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for call in _calls(tree):
            why = check(call)
            if why:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{call.lineno}: {why}")
    return found


def test_the_scan_sees_the_package():
    assert len(SOURCES) > 100 and PACKAGE / "cli" / "main.py" in SOURCES


def test_no_eval_exec_or_unpickling_anywhere():
    banned = {"eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "marshal.loads", "dill.load",
              "dill.loads", "cloudpickle.load", "cloudpickle.loads"}
    assert _findings(lambda c: f"calls {_name(c.func)}" if _name(c.func) in banned else None) == []


def test_yaml_is_only_safe_loaded():
    def check(call: ast.Call) -> str | None:
        name = _name(call.func)
        if name.startswith("yaml.") and name.split(".")[-1] in {"load", "load_all", "unsafe_load", "full_load",
                                                                 "unsafe_load_all", "full_load_all"}:
            return f"calls {name}"
        if any(k.arg == "Loader" for k in call.keywords):
            return "passes a YAML Loader"
        return None

    assert _findings(check) == []
    uses = [p for p in SOURCES if "safe_load" in p.read_text(encoding="utf-8")]
    assert PACKAGE / "config.py" in uses  # the one YAML reader


def test_no_shell():
    def check(call: ast.Call) -> str | None:
        if _name(call.func) in {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}:
            return f"calls {_name(call.func)}"
        for k in call.keywords:
            if k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                return f"{_name(call.func)}(shell=...)"
        return None

    assert _findings(check) == []


def test_trust_remote_code_is_never_turned_on():
    def check(call: ast.Call) -> str | None:
        for k in call.keywords:
            if k.arg == "trust_remote_code" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                return f"{_name(call.func)}(trust_remote_code=...)"
        return None

    assert _findings(check) == []
    from stepjudge.engines.factory import EngineConfig
    from stepjudge.train.core.config import RunConfig

    for model in (EngineConfig, RunConfig):  # no config can switch it on by default either
        assert "trust_remote_code" not in model.model_fields


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_keep_the_users_umask(tmp_path, umask, mode):
    from stepjudge.utils.io import atomic_write_json, atomic_write_text, current_umask, write_jsonl_atomic

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_text(tmp_path / "a.md", "x")
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        write_jsonl_atomic(tmp_path / "c.jsonl", [{"x": 1}])
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives under the same umask
    finally:
        os.umask(old)
    for name in ("a.md", "b.json", "c.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode == plain.stat().st_mode & 0o777


@pytest.mark.parametrize("source", ["gsm8k:../../etc/passwd", "gsm8k:../gsm8k/test", "gsm8k:/etc/passwd",
                                    "gsm8k:.hidden", "gsm8k:a/b"])
def test_a_dataset_option_cannot_leave_the_data_folder(source, tmp_path):
    from stepjudge.tasks import get_task

    (tmp_path / "gsm8k").mkdir()
    with pytest.raises(DataError, match="is not a split name .* a split cannot be a path"):
        get_task(source).load(data_root=str(tmp_path))


def test_path_traversal_is_a_clear_cli_error(tmp_path, capsys):
    from stepjudge.cli.main import main

    out = tmp_path / "o"
    assert main(["solve", "--problems", "gsm8k:../../etc/passwd", "--policy", "tiny-random", "--out", str(out)]) == 1
    assert "GSM8K split '../../etc/passwd' is not a split name" in capsys.readouterr().err
    assert not out.exists()


def test_builtin_file_names_are_plain():
    from stepjudge.data.loaders import _builtin_file

    with pytest.raises(DataError, match="not a plain file name"):
        _builtin_file(None, "math500", "../../etc/passwd", "MATH-500")


@pytest.fixture(scope="module")
def pickle_checkpoint(tmp_path_factory) -> Path:
    """The tiny random model saved the old way: pytorch_model.bin (a pickle), no safetensors."""
    from transformers import AutoModelForCausalLM

    from stepjudge.models import load_tokenizer, resolve_model

    src = resolve_model("tiny-random")
    out = tmp_path_factory.mktemp("pickled")
    import torch

    model = AutoModelForCausalLM.from_pretrained(src)
    model.save_pretrained(out)
    for f in out.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    load_tokenizer(src).save_pretrained(out)
    assert (out / "pytorch_model.bin").exists() and not list(out.glob("*.safetensors"))
    return out


def test_pickle_checkpoint_is_refused_without_opt_in(pickle_checkpoint):
    from stepjudge.engines.factory import EngineConfig, make_engine
    from stepjudge.models.registry import PickleCheckpointError, resolve_model

    with pytest.raises(PickleCheckpointError, match=r"holds pickle weights \(pytorch_model.bin\) and no "
                                                    r"\.safetensors.*opt in with allow_pickle"):
        make_engine(EngineConfig(model=str(pickle_checkpoint)))
    assert resolve_model(pickle_checkpoint, allow_pickle=True) == pickle_checkpoint
    engine = make_engine(EngineConfig(model=str(pickle_checkpoint), allow_pickle=True))  # the user opted in
    assert engine.model.config.num_hidden_layers == 2


def test_pickle_refusal_from_the_cli(pickle_checkpoint, tmp_path, capsys):
    from stepjudge.cli.main import main

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "Is it right?", "label": "Positive"}\n')
    assert main(["eval", "judge", "--judge", str(pickle_checkpoint), "--data", str(rows)]) == 1
    err = capsys.readouterr().err
    assert "holds pickle weights" in err and "--engine.allow-pickle" in err


def test_a_safetensors_checkpoint_with_a_stray_bin_is_fine(tmp_path):
    from stepjudge.models.registry import check_checkpoint_format

    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "training_args.bin").write_bytes(b"")
    check_checkpoint_format(tmp_path)  # transformers loads the safetensors; the .bin is never unpickled
