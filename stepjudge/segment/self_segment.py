"""Self-segmentation data (StepWiser §3.1): teach a policy to write ``<chunk>``-tagged reasoning.

Recipe: take correct solutions, ask a strong LLM (the *segmenter*) several times to insert chunk tags
following fixed rules, and keep a tagging only if it is valid and changes nothing but the tags. The
kept taggings become SFT targets for the policy under the chunked-solver prompt, so the policy learns
to segment its own reasoning into meaningful steps instead of relying on ``"\\n\\n"`` splits.

**Reconstruction rule** (:func:`reconstructs_exactly`): a tagging is kept iff

1. it parses with :func:`~stepjudge.segment.chunks.parse_chunks` (only whitespace outside chunks,
   except the answer text after the last ``</chunk>``), and
2. deleting every ``<chunk>`` and ``</chunk>`` string — and nothing else — gives the original text
   back character for character, ignoring only whitespace at the very start and end of the whole text.

So the segmenter is told to *insert* tags and leave every other character alone: the whitespace
between a ``</chunk>`` and the next ``<chunk>`` must be exactly what separated those two parts in the
original (a newline, a blank line, a space). A tagging that drops or adds a blank line between
chunks, puts newlines just inside the tags, or re-wraps a line is rejected: the paper keeps "text and
newlines unchanged", and whatever layout the segmenter emits is what the policy will learn to write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stepjudge.engines.base import ChatMessages, Engine, SamplingParams
from stepjudge.engines.factory import EngineConfig
from stepjudge.errors import DataError
from stepjudge.policy.prompts import chunked_solver_messages
from stepjudge.segment.chunks import CLOSE, OPEN, ChunkFormatError, parse_chunks

log = logging.getLogger(__name__)

__all__ = ["SEGMENTATION_RULES", "SOLUTION_BEGIN", "SOLUTION_END", "EXAMPLE_SOLUTION", "EXAMPLE_TAGGED",
           "segmentation_messages", "strip_tags", "reconstructs_exactly", "check_tagging",
           "build_segmentation_sft", "read_solutions", "SegmentDataConfig", "segment_solutions_file"]

SEGMENTATION_RULES = """\
How to choose the chunks:
1. One purpose per chunk. Each chunk does a single job: setting up an equation, carrying out one \
self-contained calculation, applying one idea, or stating a conclusion.
2. Keep related lines together. Lines that serve the same purpose stay in the same chunk; start a new \
chunk when the focus of the reasoning moves on to something else.
3. Cut at clear transitions, for example when the solution stops solving and starts checking its \
result, or steps aside for an explanation or remark.

Format rules:
- Wrap every segment in <chunk> and </chunk>. Only the final answer line (for example \\boxed{...}) may \
follow the last </chunk> untagged.
- Output only the tagged solution: no title, no introduction, no comments, no code fences.
- Insert the tags and change nothing else. Keep every character, space and newline of the original \
exactly as it is; do not add or remove blank lines, and do not put extra newlines inside the tags. \
Whatever separated two parts in the original (a newline, a blank line, a space) goes between the \
</chunk> of one and the <chunk> of the next.
- Check: deleting all <chunk> and </chunk> tags from your output must give back the original solution \
character for character."""

SOLUTION_BEGIN = "=== SOLUTION START ==="
SOLUTION_END = "=== SOLUTION END ==="

EXAMPLE_SOLUTION = """\
The shop sells pens at $2 each and notebooks at $5 each. We buy 3 pens and 2 notebooks.
Pens: 3 * 2 = 6 dollars.
Notebooks: 2 * 5 = 10 dollars.

Total: 6 + 10 = 16 dollars.
Check: 16 - 10 = 6, which is the cost of the pens, so the total is right.
\\boxed{16}"""

EXAMPLE_TAGGED = """\
<chunk>The shop sells pens at $2 each and notebooks at $5 each. We buy 3 pens and 2 notebooks.</chunk>
<chunk>Pens: 3 * 2 = 6 dollars.
Notebooks: 2 * 5 = 10 dollars.</chunk>

<chunk>Total: 6 + 10 = 16 dollars.</chunk>
<chunk>Check: 16 - 10 = 6, which is the cost of the pens, so the total is right.</chunk>
\\boxed{16}"""

_TEMPLATE = """\
Split the math solution below into chunks of reasoning by inserting <chunk> and </chunk> tags.

{rules}

Example. This solution:
{begin}
{example}
{end}
is segmented as:
{example_tagged}

Now segment this solution and reply with the tagged solution only:
{begin}
{solution}
{end}"""


def segmentation_messages(solution_text: str) -> ChatMessages:
    """One user turn asking the segmenter to tag ``solution_text`` (between the START/END markers)."""
    content = _TEMPLATE.format(rules=SEGMENTATION_RULES, begin=SOLUTION_BEGIN, end=SOLUTION_END,
                               example=EXAMPLE_SOLUTION, example_tagged=EXAMPLE_TAGGED,
                               solution=solution_text.strip())
    return [{"role": "user", "content": content}]


def strip_tags(tagged: str) -> str:
    """The text with every ``<chunk>`` / ``</chunk>`` removed and nothing else touched."""
    return tagged.replace(OPEN, "").replace(CLOSE, "")


TaggingVerdict = Literal["exact", "invalid_format", "not_exact"]


def check_tagging(original: str, tagged: str) -> TaggingVerdict:
    """Classify a segmenter output under the reconstruction rule of this module's docstring."""
    try:
        parse_chunks(tagged)
    except ChunkFormatError:
        return "invalid_format"
    return "exact" if strip_tags(tagged).strip() == original.strip() else "not_exact"


def reconstructs_exactly(original: str, tagged: str) -> bool:
    """True iff ``tagged`` is valid chunk format and only adds tags to ``original`` (see module doc)."""
    return check_tagging(original, tagged) == "exact"


def build_segmentation_sft(solutions: Sequence[tuple[str, str]], engine: Engine, *, tries: int = 8,
                           temperature: float = 0.7, max_tokens: int = 1024, seed: int = 0,
                           batch_size: int | None = None) -> tuple[list[dict], dict]:
    """Tag each correct solution ``tries`` times; keep the first exact tagging as an SFT record.

    ``solutions`` holds ``(problem, solution_text)`` pairs. Records are TRL conversational
    prompt-completion rows: the chunked-solver prompt of the problem and the tagged solution as the
    assistant turn. ``batch_size`` (solutions per engine call; None = all in one call) bounds how
    much work a crash can lose on long runs. Stats count every sample: ``rejected_invalid_format +
    rejected_not_exact + exact_samples == samples == solutions * tries``.
    """
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    step = batch_size or max(len(solutions), 1)
    stats = {"solutions": len(solutions), "kept": 0, "tries": tries, "samples": 0,
             "rejected_invalid_format": 0, "rejected_not_exact": 0, "exact_samples": 0}
    records: list[dict] = []
    for b, start in enumerate(range(0, len(solutions), step)):
        batch = solutions[start:start + step]
        params = SamplingParams(n=tries, temperature=temperature, max_tokens=max_tokens, seed=seed + b)
        results = engine.generate([segmentation_messages(sol) for _, sol in batch], params)
        for (problem, solution), result in zip(batch, results, strict=True):
            kept: str | None = None
            for text in result.texts:
                stats["samples"] += 1
                verdict = check_tagging(solution, text)
                if verdict != "exact":
                    stats[f"rejected_{verdict}"] += 1
                    continue
                stats["exact_samples"] += 1
                if kept is None:
                    kept = text.strip()
            if kept is not None:
                stats["kept"] += 1
                records.append({"prompt": chunked_solver_messages(problem),
                                "completion": [{"role": "assistant", "content": kept}]})
        log.info("segmentation: %d/%d solutions done, %d kept", min(start + step, len(solutions)),
                 len(solutions), stats["kept"])
    return records, stats


def read_solutions(path: str | Path, limit: int | None = None) -> list[tuple[str, str]]:
    """``(problem, solution)`` pairs from JSONL lines ``{"problem": ..., "solution": ...}``."""
    from stepjudge.utils.io import iter_jsonl

    pairs: list[tuple[str, str]] = []
    if not Path(path).exists():
        raise DataError("solutions file not found", path=str(path))
    for line, rec in iter_jsonl(path):
        for key in ("problem", "solution"):
            value = rec.get(key)
            if not isinstance(value, str) or not value.strip():
                got = "missing" if key not in rec else f"got {type(value).__name__} {str(value)[:30]!r}"
                raise DataError(f"expected a non-empty string ({got})", path=str(path), line=line, field=key)
        pairs.append((rec["problem"], rec["solution"]))
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise DataError("no solutions: the file holds no records", path=str(path))
    return pairs


class SegmentDataConfig(BaseModel):
    """``stepjudge train segment-data``: solutions JSONL in, segmentation SFT JSONL out."""

    model_config = ConfigDict(extra="forbid")

    solutions: str = Field(description='JSONL of correct solutions: {"problem": ..., "solution": ...}')
    segmenter: str = Field("smollm2-135m", description="model inserting the tags (hf name/path, served name)")
    out: str = Field(description="output JSONL of SFT records")
    tries: int = Field(8, ge=1, description="taggings sampled per solution (paper: 8)")
    temperature: float = Field(0.7, ge=0, description="segmenter sampling temperature")
    max_tokens: int = Field(1024, ge=1, description="tokens per tagging")
    seed: int = Field(0, description="sampling seed")
    batch_size: int | None = Field(None, ge=1, description="solutions per engine call (None = all at once)")
    limit: int | None = Field(None, ge=1, description="first N solutions only")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="engine settings (its model is `segmenter`)")

    def engine_config(self) -> EngineConfig:
        return self.engine.model_copy(update={"model": self.segmenter})


def segment_solutions_file(config: SegmentDataConfig | dict, engine: Engine | None = None) -> dict:
    """Run :func:`build_segmentation_sft` over a file; writes ``out`` atomically and returns the stats."""
    from stepjudge.engines.factory import make_engine
    from stepjudge.utils.io import write_jsonl_atomic

    cfg = config if isinstance(config, SegmentDataConfig) else SegmentDataConfig(**config)
    pairs = read_solutions(cfg.solutions, cfg.limit)  # validate before loading any model
    own = engine is None
    engine = engine or make_engine(cfg.engine_config())
    try:
        records, stats = build_segmentation_sft(pairs, engine, tries=cfg.tries, temperature=cfg.temperature,
                                                max_tokens=cfg.max_tokens, seed=cfg.seed,
                                                batch_size=cfg.batch_size)
    finally:
        if own:
            engine.close()
    write_jsonl_atomic(cfg.out, records)
    stats["kept_fraction"] = round(stats["kept"] / stats["solutions"], 4) if stats["solutions"] else None
    stats["out"] = str(cfg.out)
    return stats
