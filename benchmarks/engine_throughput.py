"""Generated tokens/s of the ``hf`` engine vs one-sequence-at-a-time ``model.generate``.

Prints, for the embedded model on this machine:
  * throughput at batch 1 / 8 / 64 (distinct prompts), as a ratio to sequential ``generate``;
  * ``n`` samples of one long prompt with and without prefix sharing (and plain ``generate`` with
    ``num_return_sequences``), as ratios to ``n`` separate copies;
  * the fraction of the machine's fp32 FLOP roofline reached (achieved FLOP/s over the peak of a
    large matmul measured here), so the gap to the limit stays visible;
  * fp32 vs int8 (``quantize="int8"``) engine vs plain batched fp32 ``generate`` on the same prompts and
    sampling at batch 1 and 64 (``--decode-batches``), as ratios;
  * the 1-minute load average beside each figure (other processes on the cores distort timings).

``--json F`` writes every row plus ``{"decode": {"b1": {"engine_fp32", "engine_int8", "generate_fp32"},
"b64": {...}}, "load1": <1-minute load average at the start>}`` (tok/s), so figures can be compared
across commits (only within one run are they comparable: absolute speed moves 2x between machines).

usage: python benchmarks/engine_throughput.py [--threads 2] [--dtype float32] [--new-tokens 64] [--quick]
       [--json out.json] [--decode-batches 1,64] [--skip-sections]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def load() -> str:
    return f"load1={os.getloadavg()[0]:.2f}"


def matmul_peak_gflops(threads: int, size: int = 1536, reps: int = 6) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * size**3 * reps / (time.perf_counter() - t) / 1e9


def make_prompts(tok, count: int, approx_tokens: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    words = ["start", "with", "add", "then", "subtract", "the", "number", "total", "result", "step", "check", "value", "so", "we", "get"]
    out = []
    for _ in range(count):
        text = ""
        while len(tok(text).input_ids) < approx_tokens:
            text += f"Start with {rng.randint(1, 9)}. " + " ".join(rng.choice(words) for _ in range(8)) + ". "
        out.append(text)
    return out


def sequential_generate(model, tok, prompts: list[str], new_tokens: int) -> tuple[int, float]:
    """Baseline: one prompt at a time through transformers' generate."""
    total, t = 0, time.perf_counter()
    for p in prompts:
        ids = tok(p, return_tensors="pt")
        out = model.generate(**ids, do_sample=True, temperature=1.0, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id)
        total += out.shape[1] - ids.input_ids.shape[1]
    return total, time.perf_counter() - t


def batched_generate(model, tok, prompts: list[str], new_tokens: int, n: int = 1) -> tuple[int, float]:
    tok.padding_side = "left"
    ids = tok(prompts, return_tensors="pt", padding=True)
    t = time.perf_counter()
    out = model.generate(**ids, do_sample=True, temperature=1.0, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, num_return_sequences=n, pad_token_id=tok.pad_token_id)
    return (out.shape[1] - ids.input_ids.shape[1]) * out.shape[0], time.perf_counter() - t


def engine_run(engine, prompts, new_tokens: int, n: int = 1) -> tuple[int, float]:
    from stepjudge.engines.base import SamplingParams

    t = time.perf_counter()
    res = engine.generate(prompts, SamplingParams(n=n, temperature=1.0, max_tokens=new_tokens, seed=0,
                                                  ignore_eos=True))
    return sum(c.num_tokens for r in res for c in r.completions), time.perf_counter() - t


def decode_comparison(model, tok, engine, args, batch_sizes: list[int], report) -> dict:
    """fp32 engine, int8 engine and plain batched fp32 ``generate`` on the same distinct prompts, same
    sampling (T=1, every row runs ``new_tokens``): tok/s per batch size, keyed ``b<size>``."""
    from stepjudge.engines.hf import HFEngine

    if args.dtype != "float32":
        print("\n[3] skipped: the int8 engine starts from float32 weights")
        return {}
    int8 = HFEngine(model, tok, max_batch_rows=max(64, *batch_sizes), prefix_cache_tokens=0, quantize="int8")
    prompts = make_prompts(tok, max(batch_sizes), args.prompt_tokens, seed=2)
    engine_run(int8, prompts[:2], 4)  # warm-up
    print(f"\n[3] fp32 vs int8 engine vs plain fp32 generate, distinct prompts (~{args.prompt_tokens} tokens), "
          f"{args.new_tokens} new tokens, sampling T=1")
    out: dict = {}
    for b in batch_sizes:
        gen = report(f"plain generate fp32, batch {b}", *batched_generate(model, tok, prompts[:b], args.new_tokens),
                     None)
        fp32 = report(f"hf engine fp32, batch {b}", *engine_run(engine, prompts[:b], args.new_tokens), gen,
                      "generate")
        q = report(f"hf engine int8, batch {b}", *engine_run(int8, prompts[:b], args.new_tokens), gen, "generate")
        print(f"  ratios at batch {b}: int8/fp32 engine {q / fp32:.2f}x, fp32 engine/generate {fp32 / gen:.2f}x, "
              f"int8 engine/generate {q / gen:.2f}x")
        out[f"b{b}"] = {"engine_fp32": fp32, "engine_int8": q, "generate_fp32": gen,
                        "int8_over_fp32_engine": q / fp32, "engine_over_generate": fp32 / gen,
                        "int8_engine_over_generate": q / gen, "load1": os.getloadavg()[0]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=50)
    ap.add_argument("--long-prompt-tokens", type=int, default=300)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--rollout-tokens", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="smaller batches (smoke run)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--decode-batches", default="1,64",
                    help="batch sizes of the fp32 / int8 / generate decode comparison (comma-separated)")
    ap.add_argument("--skip-sections", action="store_true",
                    help="run only the fp32 / int8 / generate decode comparison (sections [1] and [2] skipped)")
    args = ap.parse_args()

    external = os.getloadavg()[0]  # before we add our own threads to the machine
    torch.set_num_threads(args.threads)
    from stepjudge.engines.hf import HFEngine
    from stepjudge.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(args.model, dtype=args.dtype)
    engine = HFEngine(model, tok, max_batch_rows=64, prefix_cache_tokens=0)  # measure batching alone
    naive_engine = HFEngine(model, tok, max_batch_rows=64, share_prefix=False, prefix_cache_tokens=0)
    n_params = sum(p.numel() for p in model.parameters())
    peak = matmul_peak_gflops(args.threads)
    print(f"model={args.model} params={n_params / 1e6:.1f}M dtype={args.dtype} threads={args.threads} "
          f"matmul peak={peak:.1f} GFLOP/s")
    print(f"machine load before the run: {external:.2f} (load1 below includes this benchmark's {args.threads} "
          "thread(s); figures taken with external load near or above the core count are unreliable)")
    results: dict = {"threads": args.threads, "dtype": args.dtype, "peak_gflops": peak, "load_before": external,
                     "load1": external, "rows": []}

    def report(name: str, tokens: int, secs: float, base_tps: float | None, base_name: str = "") -> float:
        tps = tokens / secs
        # ~2 FLOPs per parameter per generated token (attention over the context is ignored: a lower bound).
        frac = 2 * n_params * tps / (peak * 1e9)
        ratio = f"{tps / base_tps:5.2f}x vs {base_name}" if base_tps else "baseline"
        print(f"  {name:44s} {tps:8.1f} tok/s  {ratio:28s} roofline {100 * frac:5.1f}%  ({load()})")
        results["rows"].append({"name": name, "tokens_per_s": tps, "ratio": tps / base_tps if base_tps else 1.0,
                                "roofline_fraction": frac, "load1": os.getloadavg()[0]})
        return tps

    if not args.skip_sections:
        batch_sizes = [1, 8, 16] if args.quick else [1, 8, 64]
        prompts = make_prompts(tok, max(batch_sizes), args.prompt_tokens)
        engine_run(engine, prompts[:2], 4)  # warm-up
        print(f"\n[1] distinct prompts (~{args.prompt_tokens} tokens), {args.new_tokens} new tokens, sampling T=1")
        n_seq = 4 if args.quick else 8
        tok_, secs = sequential_generate(model, tok, prompts[:n_seq], args.new_tokens)
        base = report(f"generate, one sequence at a time ({n_seq} seqs)", tok_, secs, None)
        for b in batch_sizes:
            report(f"hf engine, batch {b}", *engine_run(engine, prompts[:b], args.new_tokens), base, "sequential")
        b = batch_sizes[-1]
        report(f"plain generate, batch {b}", *batched_generate(model, tok, prompts[:b], args.new_tokens), base,
               "sequential")

        n = args.samples
        long_prompt = make_prompts(tok, 1, args.long_prompt_tokens, seed=1)
        print(f"\n[2] n={n} samples of one {args.long_prompt_tokens}-token prompt, {args.rollout_tokens} new tokens")
        copies = report(f"hf engine, {n} separate copies (no sharing)",
                        *engine_run(naive_engine, long_prompt, args.rollout_tokens, n=n), None)
        report("plain generate, num_return_sequences", *batched_generate(model, tok, long_prompt,
                                                                        args.rollout_tokens, n=n), copies, "copies")
        report("hf engine, shared prefill + KV replicated", *engine_run(engine, long_prompt, args.rollout_tokens,
                                                                         n=n), copies, "copies")

    decode_batches = [int(x) for x in args.decode_batches.split(",") if x.strip()]
    results["decode"] = decode_comparison(model, tok, engine, args, decode_batches, report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
