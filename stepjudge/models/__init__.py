"""Model names -> weights on disk. See :func:`resolve_model`."""

from stepjudge.models.registry import (
    BUILTIN_MODELS,
    cache_dir,
    load_model_and_tokenizer,
    load_tokenizer,
    materialize_embedded,
    materialize_tiny,
    resolve_model,
)

__all__ = [
    "BUILTIN_MODELS",
    "cache_dir",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "materialize_embedded",
    "materialize_tiny",
    "resolve_model",
]
