"""Reuse the KV cache of prompts that share a prefix with earlier prompts.

Why: judging and rollouts send the same long prefix again and again with a different tail (a
stepwise judge sees problem + history + step i, then problem + history + step i+1; Monte-Carlo
rollouts continue every chunk prefix of one solution). On CPU the prefill of those prefixes
dominates the cost, so the engine keeps the prompt KV of recent calls and only encodes what is new.

Entries are whole prompts (token ids + per-layer K/V of shape ``[heads, len, head_dim]``); a lookup
returns the longest common token prefix with any entry. Memory is bounded by ``max_tokens`` (LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class _Entry:
    ids: torch.Tensor                      # [len] token ids
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: K, V of shape [heads, len, dim]


class PrefixCache:
    def __init__(self, max_tokens: int = 16384, min_match: int = 16):
        self.max_tokens = max_tokens
        self.min_match = min_match
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._tokens = 0
        self.hits = 0
        self.reused_tokens = 0
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        return self._tokens

    def lookup(self, ids: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """Longest reusable prefix of ``ids``: (length, per-layer K/V sliced to it) or (0, None).

        At least one token is always left to encode, because its logits start the generation.
        """
        self.lookups += 1
        if not self._entries or self.max_tokens <= 0:
            return 0, None
        query = torch.tensor(ids, dtype=torch.long)
        best_len, best_key = 0, None
        for key, entry in self._entries.items():
            m = min(len(entry.ids), len(query) - 1)
            if m <= best_len:
                continue
            diff = (entry.ids[:m] != query[:m]).nonzero()
            common = int(diff[0]) if len(diff) else m
            if common > best_len:
                best_len, best_key = common, key
        if best_len < self.min_match or best_key is None:
            return 0, None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best_len
        entry = self._entries[best_key]
        return best_len, [(k[:, :best_len], v[:, :best_len]) for k, v in entry.kv]

    def store(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if self.max_tokens <= 0 or len(ids) > self.max_tokens:
            return
        key = tuple(ids)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = _Entry(torch.tensor(ids, dtype=torch.long), kv)
        self._tokens += len(ids)
        while self._tokens > self.max_tokens:
            _, old = self._entries.popitem(last=False)
            self._tokens -= len(old.ids)

    def clear(self) -> None:
        self._entries.clear()
        self._tokens = 0
