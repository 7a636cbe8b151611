"""Rollouts/s and tokens/s of ``stepjudge annotate`` on the embedded model vs naive generation.

Naive = one rollout at a time: ``model.generate`` on one sequence per rollout, re-encoding the prefix
each time (what a straightforward MC annotator does). The annotation run is the real pipeline
(sampling, chunking, batched rollouts with shared prefill and prefix reuse, grading, labels) from
``configs/annotate_arith.yaml``. Naive throughput is measured on the first rollout prompts of the same
run (a sample: a full naive run would take hours) and compared as a rate.

Also prints the peak resident memory of the annotation process (and of its grading worker).

usage: python benchmarks/annotate_throughput.py [--problems 8] [--threads 2] [--max-batch-rows 64]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time


def _watch_children(stop, peaks: dict) -> None:
    """Peak RSS (VmHWM) of this process's children (the grading worker), sampled from /proc."""
    me = f"PPid:\t{os.getpid()}\n"
    while not stop.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/status") as f:
                    st = f.read()
            except OSError:
                continue
            if me in st:
                peaks[pid] = max(peaks.get(pid, 0), int(st.split("VmHWM:")[1].split()[0]))
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/annotate_arith.yaml")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch-rows", type=int, default=None)
    ap.add_argument("--naive-prompts", type=int, default=2, help="rollout prompts timed naively (x M rollouts)")
    args = ap.parse_args()
    external = os.getloadavg()[0]
    import torch  # here, not at module level: the grader's spawn worker re-imports this script

    torch.set_num_threads(args.threads)

    from stepjudge.annotate.pipeline import AnnotateConfig, AnnotationRun, load_annotation_problems
    from stepjudge.config import load_yaml
    from stepjudge.segment.chunks import prefix_text
    from stepjudge.tasks.arith import fewshot_prompt

    raw = load_yaml(args.config)
    raw.setdefault("arith", {})["n"] = args.problems
    raw["out"] = tempfile.mkdtemp(prefix="sj-annotate-bench-")
    raw.setdefault("engine", {})["num_threads"] = args.threads
    if args.max_batch_rows:
        raw["engine"]["max_batch_rows"] = args.max_batch_rows
    cfg = AnnotateConfig(**raw)
    print(f"machine load before the run: {external:.2f}; threads={args.threads}; "
          f"max_batch_rows={cfg.engine.max_batch_rows}; M={cfg.rollouts}; problems={args.problems}")

    import threading

    run = AnnotationRun(cfg, progress=False)
    stop, child_peaks = threading.Event(), {}
    watcher = threading.Thread(target=_watch_children, args=(stop, child_peaks), daemon=True)
    watcher.start()
    t = time.perf_counter()
    summary = run.run()
    wall = time.perf_counter() - t
    stop.set()
    watcher.join()
    c = summary["compute"]
    rps, tps = c["rollouts"] / wall, c["rollout_tokens"] / wall
    print(f"stepjudge annotate: {c['rollouts']} rollouts ({c['rollout_tokens']} tokens) + "
          f"{summary['solutions']} samples in {wall:.1f} s wall -> {rps:.2f} rollouts/s, {tps:.1f} rollout tok/s "
          f"(load1={os.getloadavg()[0]:.2f})")
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak_kids = sum(child_peaks.values()) / 2**20
    print(f"peak memory: annotation process {peak_self:.2f} GiB + child processes (grading worker) "
          f"{peak_kids:.2f} GiB = {peak_self + peak_kids:.2f} GiB")

    # Naive: the same rollout prompts, one sequence per generate call.
    import json

    problems = {p.id: p for p in load_annotation_problems(cfg)}
    recs = [json.loads(x) for x in (run.out / "annotations.jsonl").read_text().splitlines()]
    prompts = [fewshot_prompt(problems[r["problem_id"]]) + prefix_text(r["chunks"], i)
               for r in recs if "chunks" in r for i in range(len(r["chunks"]) + 1)][: args.naive_prompts]
    engine = run.engine
    model, tok = engine.model, engine.tokenizer
    n_roll = n_tok = 0
    t = time.perf_counter()
    for p in prompts:
        ids = tok(p, return_tensors="pt")
        for _ in range(cfg.rollouts):
            with torch.inference_mode():
                out = model.generate(**ids, do_sample=True, temperature=cfg.rollout_temperature,
                                     max_new_tokens=cfg.rollout_max_tokens, stop_strings=["\n\n"],
                                     tokenizer=tok, pad_token_id=tok.pad_token_id)
            n_roll += 1
            n_tok += out.shape[1] - ids.input_ids.shape[1]
    naive_wall = time.perf_counter() - t
    nrps, ntps = n_roll / naive_wall, n_tok / naive_wall
    print(f"naive one-at-a-time generate: {n_roll} rollouts ({n_tok} tokens) in {naive_wall:.1f} s -> "
          f"{nrps:.2f} rollouts/s, {ntps:.1f} tok/s (load1={os.getloadavg()[0]:.2f})")
    print(f"ratio: {rps / nrps:.1f}x rollouts/s, {tps / ntps:.1f}x tokens/s (annotation includes sampling and "
          "grading in its wall time; naive includes neither)")


if __name__ == "__main__":
    main()
