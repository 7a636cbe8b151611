"""In-process generation with transformers, built for many samples of shared prompts.

Why not ``model.generate(num_return_sequences=n)``? It copies each prompt ``n`` times *before*
the prefill, so a 300-token prompt is encoded 16 times for 16 rollouts. Here each distinct prompt
is prefilled once (batched, left-padded), its KV cache is replicated ``n`` times
(``batch_repeat_interleave``), and decoding runs over the whole batch. Prompts that extend a prompt
of an earlier call reuse its KV (:mod:`.prefix_cache`), and the cache is written in place into
reserved capacity rather than re-concatenated each step (:mod:`.kv`). Finished rows
are dropped from the batch (``batch_select_indices``) once enough of them are done, so long
stragglers do not make every finished row pay for more forward passes. Sampling uses transformers'
own logits warpers and ``StopStringCriteria``; per-token logprobs come from the same logits at no
extra forward pass. Being in-process, it has every :class:`~stepjudge.engines.base.Capability`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch

from stepjudge.engines.base import (
    Capability,
    Completion,
    Engine,
    GenerationResult,
    Prompt,
    SamplingParams,
    TextLogprobs,
    TokenCallback,
    TokenEvent,
    render_chat,
    text_token_range,
    truncate_at_stop,
)
from stepjudge.engines.kv import GrowableCache
from stepjudge.engines.prefix_cache import PrefixCache
from stepjudge.engines.quantize import Quantize, quantize_for_inference


class HFEngine(Engine):
    """Batched sampling from a causal LM on CPU or GPU.

    Args:
        model: a model name/path for :func:`stepjudge.models.resolve_model`, or a loaded model.
        tokenizer: required when ``model`` is a loaded model.
        max_batch_rows: most sequences decoded at once (prompts x n); bounds memory.
        share_prefix: prefill each prompt once for its ``n`` samples (turn off only to benchmark).
        num_threads: torch intra-op threads (process-wide); None leaves torch's default.
        compact_ratio: drop finished rows from the batch when at most this share is still running.
        prefix_cache_tokens: prompt tokens whose KV is kept to skip re-encoding shared prefixes in later
            calls (0 turns it off); see :mod:`stepjudge.engines.prefix_cache`.
        allow_pickle: also load pickle weights (.bin); off, only safetensors load (a pickle can run code).
        quantize: ``"int8"`` swaps every Linear for PyTorch's dynamic int8 one after loading (CPU, inference
            only; a loaded ``model`` is copied, not changed); see :mod:`stepjudge.engines.quantize`.
    """

    capabilities = frozenset(Capability)

    def __init__(self, model, tokenizer=None, *, dtype: str = "float32", device: str = "cpu",
                 max_batch_rows: int = 64, share_prefix: bool = True, num_threads: int | None = None,
                 compact_ratio: float = 0.75, prefix_cache_tokens: int = 16384, allow_pickle: bool = False,
                 quantize: Quantize = "none"):
        super().__init__()
        if num_threads:
            torch.set_num_threads(num_threads)
        if isinstance(model, (str, bytes, os.PathLike)):
            from stepjudge.models import load_model_and_tokenizer

            self.model_name = str(model)
            model, tokenizer = load_model_and_tokenizer(model, dtype=dtype, device=device, allow_pickle=allow_pickle)
            model = quantize_for_inference(model, quantize, inplace=True)  # nobody else holds this model
        else:
            if tokenizer is None:
                raise ValueError("pass the tokenizer along with a loaded model")
            self.model_name = getattr(model.config, "_name_or_path", "") or "model"
            model = quantize_for_inference(model, quantize)
        self.quantize = quantize
        self.model, self._tokenizer = model, tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device)
        self.max_batch_rows = max_batch_rows
        self.share_prefix = share_prefix
        self.compact_ratio = compact_ratio
        self._eos_ids = self._collect_eos_ids()
        self.prefix_cache = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens > 0 else None
        self._stop_criteria: dict[tuple[str, ...], object] = {}

    @property
    def tokenizer(self):
        return self._tokenizer

    def clear_prefix_cache(self) -> None:
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    # ------------------------------------------------------------------ prompts
    def _collect_eos_ids(self) -> torch.Tensor:
        ids: set[int] = set()
        for src in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if src is None:
                continue
            ids.update(src if isinstance(src, (list, tuple)) else [src])
        return torch.tensor(sorted(ids), dtype=torch.long, device=self.device)

    def render(self, prompt: Prompt) -> str:
        """Chat messages -> the model's chat template with the assistant turn opened."""
        return render_chat(self.tokenizer, prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        # Chat templates already contain their special tokens.
        ids = self.tokenizer(text, add_special_tokens=isinstance(prompt, str)).input_ids
        if not ids:  # an empty prompt: start from BOS (or EOS), as OpenAI-style servers do
            start = self.tokenizer.bos_token_id
            ids = [start if start is not None else self.tokenizer.eos_token_id]
        return ids

    # ------------------------------------------------------------------ API
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *,
                 on_tokens: TokenCallback | None = None) -> list[GenerationResult]:
        """Sample ``params.n`` completions per prompt. ``on_tokens`` (optional) is called once per decode
        step with that step's :class:`~stepjudge.engines.base.TokenEvent` per live sample, on this
        thread, while the batch is still decoding: what a streaming server needs for its first token
        to leave before the last is decoded. Without it the loop does no per-step Python work."""
        return self.generate_ids([self.encode(p) for p in prompts], params, on_tokens=on_tokens)

    @torch.inference_mode()
    def generate_ids(self, encoded: Sequence[list[int]], params: SamplingParams, *,
                     on_tokens: TokenCallback | None = None) -> list[GenerationResult]:
        """:meth:`generate` from prompts already tokenized (e.g. a trainer's prompt ids)."""
        start = time.perf_counter()
        prompts = encoded
        results: list[GenerationResult | None] = [None] * len(prompts)
        n = params.n
        # Group prompts by length so padding waste is small; each group is one decode batch.
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        if self.share_prefix:
            per_batch = max(1, self.max_batch_rows // n)
            groups = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
            for group in groups:
                where = [(i, k) for i in group for k in range(n)]
                outs = self._generate_batch([encoded[i] for i in group], params, repeat=n,
                                            on_tokens=on_tokens, where=where)
                for j, i in enumerate(group):
                    results[i] = GenerationResult(outs[j * n:(j + 1) * n], prompt_tokens=len(encoded[i]))
        else:  # naive: every sample carries its own copy of the prompt through prefill
            rows = [(i, k) for i in order for k in range(n)]
            per_batch = max(1, self.max_batch_rows)
            collected: dict[int, list[Completion]] = {i: [] for i in range(len(prompts))}
            for b in range(0, len(rows), per_batch):
                chunk = rows[b:b + per_batch]
                outs = self._generate_batch([encoded[i] for i, _ in chunk], params, repeat=1,
                                            on_tokens=on_tokens, where=chunk)
                for (i, _), out in zip(chunk, outs, strict=True):
                    collected[i].append(out)
            for i in range(len(prompts)):
                results[i] = GenerationResult(collected[i], prompt_tokens=len(encoded[i]))
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(len(e) for e in encoded)
        self.stats.completion_tokens += sum(c.num_tokens for r in results for c in r.completions)
        self.stats.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[Prompt], token_ids: Sequence[int]) -> list[list[float]]:
        """log p(token | prompt) for each of ``token_ids`` after each prompt: one batched prefill, no decoding.

        This is how a verdict's probability is read without sampling (e.g. P(Positive) of a judge whose
        answer is pre-filled up to the verdict). Prompts share the prefix cache with :meth:`generate`.
        """
        encoded = [self.encode(p) for p in prompts]
        ids = torch.tensor(list(token_ids), dtype=torch.long, device=self.device)
        out: list[list[float] | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        step = max(1, self.max_batch_rows)
        for b in range(0, len(order), step):
            group = order[b:b + step]
            _cache, _attn, _pos, logits = self._prefill([encoded[i] for i in group], 0)
            lps = torch.log_softmax(logits, dim=-1).index_select(1, ids)
            for j, i in enumerate(group):
                out[i] = lps[j].tolist()
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(len(e) for e in encoded)
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def prompt_logprobs(self, prompts: Sequence[Prompt], texts: Sequence[str]) -> list[TextLogprobs]:
        """Per-token log-probs of each text after its prompt: one forward pass per ``max_batch_rows`` pairs.

        ``prompt + text`` is tokenized as one string (as a server answering an ``echo`` request does) and
        the text's tokens are picked by character offsets (:func:`~stepjudge.engines.base.text_token_range`).
        Rows are left-padded with explicit positions, so padding does not change a value; the prefix
        cache is not used, so the numbers are those of a plain forward pass. The first token of a
        sequence (an empty prompt, no BOS) has no log-prob: None, as in an OpenAI echo answer.
        """
        if len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} texts")
        rows = [self._text_tokens(p, t) for p, t in zip(prompts, texts, strict=True)]
        out: list[TextLogprobs | None] = [TextLogprobs([], [], []) if not r[0] else None for r in rows]
        order = sorted((i for i, r in enumerate(rows) if r[0]), key=lambda i: len(rows[i][0]))
        step = max(1, self.max_batch_rows)
        pad = self.tokenizer.pad_token_id
        for b in range(0, len(order), step):
            group = order[b:b + step]
            width = max(len(rows[i][0]) for i in group)
            # columns from the first position that predicts a text token to the end of the row
            keep = max(len(rows[i][0]) - max(rows[i][1].start, 1) + 1 for i in group)
            input_ids = torch.full((len(group), width), pad, dtype=torch.long)
            attn = torch.zeros((len(group), width), dtype=torch.long)
            pos = torch.zeros((len(group), width), dtype=torch.long)
            for r, i in enumerate(group):
                ids = rows[i][0]
                input_ids[r, width - len(ids):] = torch.tensor(ids)
                attn[r, width - len(ids):] = 1
                pos[r, width - len(ids):] = torch.arange(len(ids))
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attn.to(self.device),
                                position_ids=pos.to(self.device), logits_to_keep=keep).logits.float()
            lps = torch.log_softmax(logits, dim=-1)
            for r, i in enumerate(group):
                ids, span, tokens, offsets = rows[i]
                # token j of the row sits in column width - len(ids) + j; it is predicted one column earlier
                scored = [j for j in span if j > 0]
                cols = [keep - len(ids) + j - 1 for j in scored]
                targets = torch.tensor([ids[j] for j in scored], dtype=torch.long, device=lps.device)
                picked = lps[r, cols].gather(-1, targets[:, None]).squeeze(-1).tolist() if cols else []
                out[i] = TextLogprobs(tokens, offsets, [None] * (len(span) - len(scored)) + picked)
        self.stats.prompts += len(rows)
        self.stats.prompt_tokens += sum(len(r[0]) for r in rows)
        return out  # type: ignore[return-value]

    def _text_tokens(self, prompt: Prompt, text: str) -> tuple[list[int], range, list[str], list[int]]:
        """Token ids of ``prompt + text``, the range of the text's tokens, their strings and offsets."""
        head = self.render(prompt)
        full = head + text
        enc = self.tokenizer(full, add_special_tokens=isinstance(prompt, str), return_offsets_mapping=True)
        ids, spans = list(enc.input_ids), [(int(s), int(e)) for s, e in enc.offset_mapping]
        while len(ids) > 1 and spans[-1][0] == spans[-1][1]:  # an appended EOS: no earlier token sees it
            ids, spans = ids[:-1], spans[:-1]
        starts = [s for s, _ in spans]
        span = text_token_range(starts, len(full), len(head))
        tokens = [self.tokenizer.decode([ids[j]]) for j in span]
        offsets = [starts[j] - len(head) for j in span]
        return ids, span, tokens, offsets

    # ------------------------------------------------------------------ core loop
    def _stop_criterion(self, stop: tuple[str, ...]):
        if not stop:
            return None
        if stop not in self._stop_criteria:
            from transformers.generation.stopping_criteria import StopStringCriteria

            self._stop_criteria[stop] = StopStringCriteria(self.tokenizer, list(stop))
        return self._stop_criteria[stop]

    def _sample(self, logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None):
        """Greedy, or temperature + nucleus sampling by inverse CDF.

        ``torch.multinomial`` draws one exponential variate per vocabulary entry (49k per row here),
        which profiled at ~8% of a batch-64 decode step; one uniform per row and a ``searchsorted``
        over the CDF gives the same distribution for a fraction of the cost.
        """
        if params.greedy:
            return logits.argmax(dim=-1)
        probs = (logits / params.temperature).softmax(dim=-1)
        if params.top_p < 1.0:
            sorted_probs, sorted_idx = torch.sort(probs, descending=True, dim=-1)
            cdf = sorted_probs.cumsum(dim=-1)
            # keep the smallest prefix whose mass reaches top_p (the token that crosses it included)
            sorted_probs = sorted_probs.masked_fill(cdf - sorted_probs >= params.top_p, 0.0)
            cdf = sorted_probs.cumsum(dim=-1)
            u = torch.rand((probs.shape[0], 1), generator=gen, device=probs.device) * cdf[:, -1:]
            pick = torch.searchsorted(cdf, u).clamp_(max=probs.shape[-1] - 1)
            return sorted_idx.gather(-1, pick).squeeze(-1)
        cdf = probs.cumsum(dim=-1)
        u = torch.rand((probs.shape[0], 1), generator=gen, device=probs.device) * cdf[:, -1:]
        return torch.searchsorted(cdf, u).clamp_(max=probs.shape[-1] - 1).squeeze(-1)

    def _prefill(self, prompt_ids: list[list[int]], max_new_tokens: int = 0):
        """Encode a batch of prompts, reusing cached prefixes; returns cache, mask, positions, logits.

        Layout of row r (P = longest reused prefix, S = longest new part):
        ``[pad | reused prefix p_r | pad | new tokens s_r]`` with the attention mask 0 on the pads. The
        model takes holes in the mask; ``position_ids`` keep every row's real tokens contiguous, so the
        reused keys (encoded at positions 0..p_r-1) line up with the new ones.
        """
        dev = self.device
        pad = self.tokenizer.pad_token_id
        hits = [self.prefix_cache.lookup(ids) if self.prefix_cache else (0, None) for ids in prompt_ids]
        B = len(prompt_ids)
        P = max(h[0] for h in hits)
        S = max(len(ids) - h[0] for ids, h in zip(prompt_ids, hits, strict=True))
        input_ids = torch.full((B, S), pad, dtype=torch.long)
        attn = torch.zeros((B, P + S), dtype=torch.long)
        pos = torch.zeros((B, S), dtype=torch.long)
        for r, (ids, (p, _)) in enumerate(zip(prompt_ids, hits, strict=True)):
            new = ids[p:]
            input_ids[r, S - len(new):] = torch.tensor(new)
            attn[r, P - p:P] = 1
            attn[r, P + S - len(new):] = 1
            pos[r, S - len(new):] = torch.arange(p, len(ids))
        input_ids, attn, pos = input_ids.to(dev), attn.to(dev), pos.to(dev)
        cache = GrowableCache(self.model.config, reserve=P + S + max_new_tokens)
        if P > 0:
            for layer, (k0, _v0) in enumerate(next(h[1] for h in hits if h[1] is not None)):
                k = torch.zeros((B, k0.shape[0], P, k0.shape[2]), dtype=k0.dtype, device=dev)
                v = torch.zeros_like(k)
                for r, (p, kv) in enumerate(hits):
                    if p:
                        k[r, :, P - p:] = kv[layer][0]
                        v[r, :, P - p:] = kv[layer][1]
                cache.update(k, v, layer)
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        if self.prefix_cache is not None:
            for r, ids in enumerate(prompt_ids):
                cols = attn[r].nonzero().flatten()
                self.prefix_cache.store(ids, [(lay.keys[r].index_select(1, cols), lay.values[r].index_select(1, cols))
                                              for lay in cache.layers])
        # Decoding continues from each row's last real position.
        position_ids = torch.zeros_like(attn)
        position_ids[:, -1] = pos[:, -1]
        return cache, attn, position_ids, out.logits[:, -1, :].float()

    @staticmethod
    def _token_events(where: Sequence[tuple[int, int]], active: torch.Tensor, alive: torch.Tensor,
                      tokens: torch.Tensor, is_eos: torch.Tensor, step_lp: torch.Tensor | None,
                      finish: dict[int, str]) -> list[TokenEvent]:
        """This step's token of every sample still running before it (one host copy per tensor)."""
        rows = alive.nonzero().flatten().tolist()
        orig, toks, eos = active.tolist(), tokens.tolist(), is_eos.tolist()
        lps = step_lp.tolist() if step_lp is not None else None
        events = []
        for r in rows:
            o = orig[r]
            prompt, sample = where[o] if where else (o, 0)
            events.append(TokenEvent(prompt, sample, None if eos[r] else toks[r],
                                     lps[r] if lps is not None and not eos[r] else None,
                                     finish.get(o)))  # type: ignore[arg-type]
        return events

    def _generate_batch(self, prompt_ids: list[list[int]], params: SamplingParams, repeat: int, *,
                        on_tokens: TokenCallback | None = None,
                        where: Sequence[tuple[int, int]] = ()) -> list[Completion]:
        """Prefill ``prompt_ids`` once, decode ``repeat`` samples of each; rows ordered prompt-major.
        ``where[row]`` is the (prompt, sample) of a row in the caller's numbering, for ``on_tokens``."""

        dev = self.device
        cache, attn, position_ids, logits = self._prefill(prompt_ids, params.max_tokens)
        if repeat > 1:
            cache.batch_repeat_interleave(repeat)
            logits = logits.repeat_interleave(repeat, dim=0)
            attn = attn.repeat_interleave(repeat, dim=0)
            position_ids = position_ids.repeat_interleave(repeat, dim=0)
        rows = logits.shape[0]
        next_pos = position_ids[:, -1] + 1

        gen = None
        if params.seed is not None and not params.greedy:
            gen = torch.Generator(device=dev).manual_seed(params.seed)
        stop_crit = self._stop_criterion(params.stop)
        end_ids = self._eos_ids
        if params.stop_token_ids:
            end_ids = torch.cat([end_ids, torch.tensor(params.stop_token_ids, dtype=torch.long, device=dev)])

        active = torch.arange(rows, device=dev)           # original row index of each live row
        generated = torch.empty((rows, 0), dtype=torch.long, device=dev)  # tokens of live rows
        lps = torch.empty((rows, 0), dtype=torch.float32, device=dev)
        done_ids: dict[int, torch.Tensor] = {}
        done_lps: dict[int, torch.Tensor] = {}
        finish: dict[int, str] = {}
        sampled: dict[int, int] = {}  # tokens sampled per row, EOS included (as OpenAI servers count)
        alive = torch.ones(rows, dtype=torch.bool, device=dev)  # over current (uncompacted) rows

        for step in range(params.max_tokens):
            tokens = self._sample(logits, params, gen)
            if params.logprobs:
                step_lp = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
                lps = torch.cat([lps, step_lp[:, None]], dim=1)
            generated = torch.cat([generated, tokens[:, None]], dim=1)
            is_eos = torch.isin(tokens, end_ids)
            if params.ignore_eos:
                is_eos = torch.isin(tokens, end_ids[len(self._eos_ids):])
            hit_stop = stop_crit(generated, None).to(dev) if stop_crit is not None else torch.zeros_like(is_eos)
            newly_done = alive & (is_eos | hit_stop)
            last_step = step == params.max_tokens - 1
            for r in (alive if last_step else newly_done).nonzero().flatten().tolist():
                orig = int(active[r])
                seq = generated[r]
                if is_eos[r] and alive[r]:
                    seq = seq[:-1]
                done_ids[orig] = seq
                sampled[orig] = generated.shape[1]
                done_lps[orig] = lps[r, :len(seq)] if params.logprobs else None
                finish[orig] = "stop" if bool(newly_done[r]) else "length"
            if on_tokens is not None:
                on_tokens(self._token_events(where, active, alive, tokens, is_eos,
                                             step_lp if params.logprobs else None, finish))
            alive &= ~newly_done
            if last_step or not bool(alive.any()):
                break
            # Drop finished rows once few enough are left: a KV copy is costly, so amortise it.
            if int(alive.sum()) <= self.compact_ratio * alive.numel():
                keep = alive.nonzero().flatten()
                cache.batch_select_indices(keep)
                active, generated, lps = active[keep], generated[keep], lps[keep] if params.logprobs else lps
                tokens, attn, next_pos = tokens[keep], attn[keep], next_pos[keep]
                alive = torch.ones(len(keep), dtype=torch.bool, device=dev)
            attn = torch.cat([attn, torch.ones((attn.shape[0], 1), dtype=attn.dtype, device=dev)], dim=1)
            out = self.model(input_ids=tokens[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1

        completions = []
        for orig in range(rows):
            ids = done_ids[orig].tolist()
            raw = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, _ = truncate_at_stop(raw, params.stop)
            completions.append(Completion(
                text=text, num_tokens=sampled[orig],
                finish_reason=finish[orig],  # type: ignore[arg-type]
                token_ids=ids,
                logprobs=done_lps[orig].tolist() if params.logprobs else None,
            ))
        return completions
