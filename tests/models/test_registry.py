"""Model resolver: built-in names, local paths, hub ids offline, concurrent materialization."""

import json
import multiprocessing as mp

import pytest

from stepjudge.errors import ModelNotFoundError
from stepjudge.models import registry
from stepjudge.models.registry import resolve_model


def test_tiny_model_is_cached_and_has_smollm2_tokenizer():
    path = resolve_model("tiny-random")
    assert (path / "model.safetensors").exists() and (path / ".complete").exists()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and cfg["vocab_size"] == 49152
    assert resolve_model("tiny") == path


def test_embedded_model_is_plain_safetensors_not_quantized():
    path = resolve_model("smollm2-135m")
    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["hidden_size"] == 576 and cfg["num_hidden_layers"] == 30
    assert (path / "model.safetensors").exists()


def test_local_path(tmp_path):
    assert resolve_model(resolve_model("tiny-random")) == resolve_model("tiny-random")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        resolve_model(str(tmp_path / "missing"))


def test_hub_id_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="could not get model 'nobody/no-such-model'"):
        resolve_model("nobody/no-such-model")


def _build_in_child(cache: str, q) -> None:
    import os

    os.environ["STEPJUDGE_CACHE"] = cache
    calls = []

    def build(out):
        import time

        calls.append(1)
        time.sleep(0.5)
        (out / "config.json").write_text("{}")

    p = registry._materialize("race-test", build)
    q.put((str(p), len(calls)))


def test_concurrent_materialization_builds_once(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [q.get(timeout=5) for _ in procs]
    assert len({r[0] for r in results}) == 1
    assert sum(r[1] for r in results) == 1  # exactly one process built it
    assert (tmp_path / "models" / "race-test" / "config.json").exists()
