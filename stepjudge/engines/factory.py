"""Typed engine configuration and the one place that builds an engine from it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.engines.base import Engine


class EngineConfig(BaseModel):
    """Every knob of an engine. ``kind='hf'`` runs the model in-process; ``kind='openai'`` talks to
    any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ``stepjudge serve``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hf", "openai"] = Field("hf", description="hf: the model in-process; openai: an OpenAI-compatible server")
    model: str = Field("smollm2-135m", description="built-in name, local path or hub id (hf); served model name (openai)")
    # hf
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="hf: weights dtype (float32 is fastest on CPU)")
    device: str = Field("cpu", description="hf: torch device (cpu, cuda, cuda:1)")
    num_threads: int | None = Field(None, description="torch threads; None = torch default")
    max_batch_rows: int = Field(64, ge=1, description="sequences decoded at once (prompts x n)")
    share_prefix: bool = Field(True, description="hf: reuse the KV cache of shared prompt prefixes")
    quantize: Literal["none", "int8"] = Field(
        "none", description="hf: int8 swaps every Linear for PyTorch's dynamic int8 one after loading (CPU only; "
                            "for sampling and scoring, never training; faster decode at a quality cost: "
                            "see docs/performance.md)")
    allow_pickle: bool = Field(False, description="hf: also load a checkpoint whose weights are pickles (.bin, "
                                                  ".pt); loading one can run code, so only for trusted files")
    # openai
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: server URL")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    max_concurrency: int = Field(16, ge=1, description="openai: parallel HTTP requests")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(4, ge=0, description="openai: retries of a transient failure (connection refused, "
                                                  "timeout, HTTP 408/409/429/5xx), with back-off")
    retry_backoff_s: float = Field(0.5, ge=0, description="openai: first back-off before a retry; doubled each "
                                                          "retry, with jitter")
    retry_max_backoff_s: float = Field(8.0, ge=0, description="openai: longest wait before one retry (a "
                                                              "server's Retry-After included)")
    use_chat: bool = Field(True, description="send chat prompts to /chat/completions (else render locally)")
    tokenizer: str | None = Field(None, description="openai: the served model's tokenizer (name or path) loaded "
                                                    "locally, for chat rendering and tokenizer access")


def make_engine(config: EngineConfig | dict) -> Engine:
    if isinstance(config, dict):
        config = EngineConfig(**config)
    if config.kind == "hf":
        from stepjudge.engines.hf import HFEngine

        return HFEngine(config.model, dtype=config.dtype, device=config.device,
                        max_batch_rows=config.max_batch_rows, share_prefix=config.share_prefix,
                        num_threads=config.num_threads, allow_pickle=config.allow_pickle,
                        quantize=config.quantize)
    from stepjudge.engines.openai import OpenAIEngine

    return OpenAIEngine(config.base_url, config.model, api_key_env=config.api_key_env,
                        max_concurrency=config.max_concurrency, timeout_s=config.timeout_s,
                        max_retries=config.max_retries, use_chat=config.use_chat, tokenizer=config.tokenizer,
                        retry_backoff_s=config.retry_backoff_s, retry_max_backoff_s=config.retry_max_backoff_s)
