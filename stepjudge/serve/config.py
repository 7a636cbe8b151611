"""Every setting of ``stepjudge serve`` as one pydantic model: the YAML keys, the flags and their help."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from stepjudge.engines.factory import EngineConfig

__all__ = ["API_KEY_VARIABLE", "ServeConfig", "ServeLimits"]

API_KEY_VARIABLE = "STEPJUDGE_API_KEY"  # read when neither --api-key nor --api-key-env is given (as VLLM_API_KEY)


class ServeLimits(BaseModel):
    """What one client may ask of the server. Each bound is answered with a 4xx naming the setting, so a
    stray request (a 20 MB prompt, ``max_tokens: 1e9``) cannot take the process down."""

    model_config = ConfigDict(extra="forbid")

    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1,
                                   description="largest request body in bytes; a bigger one is answered 413")
    max_tokens_limit: int = Field(4096, ge=1, description="largest max_tokens a request may ask (400 above it)")
    max_n: int = Field(64, ge=1, description="largest n (samples per prompt) a request may ask (400 above it)")
    max_model_len: int | None = Field(
        None, ge=1, description="context length: prompt tokens + max_tokens must fit (400 otherwise); None: "
                                "the model's max_position_embeddings")
    max_queue: int = Field(256, ge=1, description="requests admitted at once (waiting or decoding); more are "
                                                 "answered 429 at once instead of queueing in memory")


class _ServeWhere(BaseModel):
    """What is served, where, and to whom (a base so these come first in ``--help``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="built-in name, local path or hub id of the served model")
    host: str = Field("127.0.0.1", description="interface to bind (loopback only by default); 0.0.0.0 for all")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    served_model_name: str | None = Field(None, description="name clients put in 'model' (None: the model)")
    api_key: SecretStr | None = Field(
        None, description="key clients must send as 'Authorization: Bearer <key>' on every route but /health. "
                          "A flag shows in the process list: prefer $STEPJUDGE_API_KEY or --api-key-env")
    api_key_env: str | None = Field(
        None, description="environment variable holding the key (None: --api-key, else $STEPJUDGE_API_KEY, "
                          "else no authentication)")


class ServeConfig(ServeLimits, _ServeWhere):
    """``stepjudge serve``: the model, where it listens, who may call it, the limits and the batching."""

    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="weights dtype")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")
    quantize: Literal["none", "int8"] = Field(
        "none", description="int8: PyTorch's dynamic int8 Linear layers (CPU only; faster decode at a quality "
                            "cost, see docs/performance.md)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's choice)")
    max_batch_rows: int = Field(64, ge=1, description="sequences decoded at once (prompts x n)")
    max_batch_prompts: int = Field(64, ge=1, description="prompts of concurrent requests decoded in one batch")
    batch_window_ms: float = Field(10.0, ge=0,
                                   description="how long to wait for more requests to batch with the first one")
    shutdown_timeout_s: float = Field(
        30.0, ge=0, description="on SIGTERM/SIGINT: new requests are refused, in-flight ones get this long to "
                                "finish")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="uvicorn log level")

    def engine_config(self) -> EngineConfig:
        """The in-process (hf) engine that answers the requests."""
        return EngineConfig(kind="hf", model=self.model, dtype=self.dtype, device=self.device,
                            num_threads=self.threads, max_batch_rows=self.max_batch_rows,
                            quantize=self.quantize)

    def limits(self) -> ServeLimits:
        """The per-request bounds alone (what :func:`stepjudge.serve.create_app` takes)."""
        return ServeLimits(**{name: getattr(self, name) for name in ServeLimits.model_fields})
