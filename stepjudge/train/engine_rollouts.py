"""GRPO rollouts through stepjudge's ``hf`` engine instead of ``model.generate`` (CPU / single GPU).

Why: TRL's non-vLLM path hands ``model.generate`` a batch in which every prompt appears G times, so
each prompt is prefilled G times and the batch is padded to the longest prompt. The engine's decoder
(:class:`stepjudge.engines.hf.HFEngine`) prefills each distinct prompt once and copies its KV cache
into its G rows, drops finished rows as it goes, and samples with one ``searchsorted`` per step.
It runs on the live policy (the weights being trained), so there is nothing to sync.

What stays TRL's: everything after the completion ids (rewards, advantages, log-probs, the loss).
TRL masks a completion after its first EOS; the engine stops there, and the EOS id is put back so
TRL sees the same layout. Sampling settings the engine does not have (``top_k``, ``min_p``,
``repetition_penalty``), vLLM, tools and images fall back to TRL's own path, with a warning once.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from stepjudge.engines.base import SamplingParams

__all__ = ["EngineRolloutMixin", "with_engine_rollouts"]

log = logging.getLogger(__name__)


class EngineRolloutMixin:
    """Mix in before a TRL ``GRPOTrainer`` (sub)class: its ``_generate_single_turn`` uses the engine."""

    _rollout_engine: Any = None
    _rollout_warned: bool = False

    def _engine_rollouts_supported(self, images: Any) -> str | None:
        if getattr(self, "use_vllm", False):
            return "vLLM generates the rollouts"
        if images is not None and any(i is not None for i in images):
            return "images"
        if getattr(self, "tools", None):
            return "tools"
        if (self.top_k not in (None, 0, -1) or self.min_p not in (None, 0.0)
                or self.repetition_penalty not in (None, 1.0)):
            return "top_k / min_p / repetition_penalty are set"
        return None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                              has_tool_images=False):  # noqa: ANN001 -- TRL's signature
        why_not = self._engine_rollouts_supported(images)
        if why_not is not None:
            if not self._rollout_warned:
                log.warning("engine rollouts off (%s): using TRL's generation", why_not)
                self._rollout_warned = True
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields,  # type: ignore[misc]
                                                 num_generations, has_tool_images)
        return self._engine_generate(prompt_ids, num_generations), None

    def _engine_generate(self, prompt_ids: list[list[int]], num_generations: int) -> list[list[int]]:
        from stepjudge.engines.hf import HFEngine

        model = self.accelerator.unwrap_model(self.model)  # type: ignore[attr-defined]
        if self._rollout_engine is None or self._rollout_engine.model is not model:
            tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)  # type: ignore[attr-defined]
            # no prefix cache: the weights change every update, cached KV would be stale; never int8: the
            # engine must sample from the live weights (HFEngine refuses int8 for a model in training mode)
            self._rollout_engine = HFEngine(model, tokenizer, device=str(self.accelerator.device),  # type: ignore[attr-defined]
                                            prefix_cache_tokens=0, max_batch_rows=max(64, len(prompt_ids)),
                                            quantize="none")
        # TRL's sampler repeats each prompt G times in a row; decode each distinct prompt once with n=G
        g = num_generations if len(prompt_ids) % num_generations == 0 else 1
        groups = [prompt_ids[i:i + g] for i in range(0, len(prompt_ids), g)]
        if any(any(p != grp[0] for p in grp) for grp in groups):
            groups, g = [[p] for p in prompt_ids], 1
        params = SamplingParams(n=g, temperature=self.temperature, top_p=self.top_p,  # type: ignore[attr-defined]
                                max_tokens=self.max_completion_length, seed=None)  # type: ignore[attr-defined]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                results = self._rollout_engine.generate_ids([grp[0] for grp in groups], params)
        finally:
            model.train(was_training)
        tok = self._rollout_engine.tokenizer
        eos = tok.eos_token_id if tok.eos_token_id is not None else int(self._rollout_engine._eos_ids[0])
        out = []
        for res in results:
            for c in res.completions:
                ids = list(c.token_ids or [])
                # the engine cuts EOS off; TRL keeps the first EOS inside the completion mask
                out.append(ids + [eos] if c.finish_reason == "stop" else ids)
        return out


def with_engine_rollouts(trainer_cls: type) -> type:
    """``trainer_cls`` with :class:`EngineRolloutMixin` in front (same name, prefixed)."""
    if issubclass(trainer_cls, EngineRolloutMixin):
        return trainer_cls
    return type(f"EngineRollout{trainer_cls.__name__}", (EngineRolloutMixin, trainer_cls), {})
