"""GrowableCache must be a drop-in for DynamicCache: same logits, same batch operations."""

import torch
from transformers import DynamicCache

from stepjudge.engines.kv import GrowableCache
from stepjudge.models import load_model_and_tokenizer


def _decode(model, cache, ids, steps=5, select=None, repeat=None):
    attn = torch.ones_like(ids)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=attn, past_key_values=cache, use_cache=True)
        if repeat:
            cache.batch_repeat_interleave(repeat)
            ids, attn = ids.repeat_interleave(repeat, 0), attn.repeat_interleave(repeat, 0)
            out.logits = out.logits.repeat_interleave(repeat, 0)
        if select is not None:
            cache.batch_select_indices(select)
            ids, attn, out.logits = ids[select], attn[select], out.logits[select]
        logits = [out.logits[:, -1]]
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(steps):
            attn = torch.cat([attn, torch.ones_like(tok)], 1)
            out = model(input_ids=tok, attention_mask=attn, past_key_values=cache, use_cache=True)
            logits.append(out.logits[:, -1])
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
    return torch.stack(logits), cache.get_seq_length()


def test_growable_cache_matches_dynamic_cache():
    model, _ = load_model_and_tokenizer("tiny-random")
    ids = torch.randint(10, 1000, (3, 7), generator=torch.Generator().manual_seed(0))
    for kw in ({}, {"repeat": 2}, {"select": torch.tensor([2, 0])}):
        ref, ref_len = _decode(model, DynamicCache(config=model.config), ids, **kw)
        # reserve=0 forces the grow-by-1.5x path; reserve=64 the preallocated one
        for reserve in (0, 64):
            got, got_len = _decode(model, GrowableCache(model.config, reserve=reserve), ids, **kw)
            assert got_len == ref_len == 12
            torch.testing.assert_close(got, ref)
