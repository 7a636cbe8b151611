"""Every setting of ``stepjudge serve`` as one pydantic model: the YAML keys, the flags and their help."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.engines.factory import EngineConfig

__all__ = ["ServeConfig"]


class ServeConfig(BaseModel):
    """``stepjudge serve``: the model, where it listens and how requests are batched."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="built-in name, local path or hub id of the served model")
    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 for all")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    served_model_name: str | None = Field(None, description="name clients put in 'model' (None: the model)")
    api_key_env: str | None = Field(
        None, description="environment variable holding the key clients must send as 'Authorization: Bearer "
                          "<key>' (None: no authentication)")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="weights dtype")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's choice)")
    max_batch_rows: int = Field(64, ge=1, description="sequences decoded at once (prompts x n)")
    max_batch_prompts: int = Field(64, ge=1, description="prompts of concurrent requests decoded in one batch")
    batch_window_ms: float = Field(10.0, ge=0,
                                   description="how long to wait for more requests to batch with the first one")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="uvicorn log level")

    def engine_config(self) -> EngineConfig:
        """The in-process (hf) engine that answers the requests."""
        return EngineConfig(kind="hf", model=self.model, dtype=self.dtype, device=self.device,
                            num_threads=self.threads, max_batch_rows=self.max_batch_rows)
