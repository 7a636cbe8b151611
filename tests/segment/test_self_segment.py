"""Self-segmentation data: the exact-reconstruction filter and the SFT data builder."""

import json
from collections.abc import Sequence

import pytest
import torch

from stepjudge.cli import main as cli_main
from stepjudge.engines.base import Completion, Engine, GenerationResult, Prompt, SamplingParams
from stepjudge.errors import DataError
from stepjudge.policy import chunked_solver_messages
from stepjudge.segment import (
    SEGMENTATION_RULES,
    build_segmentation_sft,
    check_tagging,
    format_chunks,
    reconstructs_exactly,
    segment_solutions_file,
    segmentation_messages,
    strip_tags,
)
from stepjudge.segment.self_segment import (
    EXAMPLE_SOLUTION,
    EXAMPLE_TAGGED,
    SOLUTION_BEGIN,
    SOLUTION_END,
    read_solutions,
)
from stepjudge.tasks.arith import generate_problems, reference_solution

torch.set_num_threads(1)

ORIGINAL = "Let x be the price.\n2x = 10, so x = 5.\n\nCheck: 2 * 5 = 10.\n\\boxed{5}"


def _arith_solutions(n: int) -> list[tuple[str, str]]:
    return [(p.problem, strip_tags(reference_solution(p))) for p in generate_problems(n=n, steps=2, seed=1)]


# --------------------------------------------------------------------------- reconstruction rule
def test_strip_tags_removes_only_the_tags():
    assert strip_tags("<chunk>a\n</chunk>\n\n<chunk> b</chunk>\n\\boxed{1}") == "a\n\n\n b\n\\boxed{1}"
    assert strip_tags("<chunks> <Chunk>") == "<chunks> <Chunk>"


@pytest.mark.parametrize("tagged", [
    # tags inserted, every separator kept (newline, blank line), answer left after the last chunk
    "<chunk>Let x be the price.</chunk>\n<chunk>2x = 10, so x = 5.</chunk>\n\n"
    "<chunk>Check: 2 * 5 = 10.</chunk>\n\\boxed{5}",
    # several lines in one chunk; the answer inside the last chunk
    "<chunk>Let x be the price.\n2x = 10, so x = 5.</chunk>\n\n<chunk>Check: 2 * 5 = 10.\n\\boxed{5}</chunk>",
    # whitespace around the whole text does not count
    "\n<chunk>Let x be the price.\n2x = 10, so x = 5.\n\nCheck: 2 * 5 = 10.</chunk>\n\\boxed{5}\n\n",
])
def test_reconstructs_exactly_accepts_pure_tag_insertions(tagged):
    assert reconstructs_exactly(ORIGINAL, tagged)
    assert check_tagging(ORIGINAL, tagged) == "exact"


@pytest.mark.parametrize("tagged, verdict", [
    # dropped character ("price" -> "pric")
    ("<chunk>Let x be the pric.</chunk>\n<chunk>2x = 10, so x = 5.</chunk>\n\n"
     "<chunk>Check: 2 * 5 = 10.</chunk>\n\\boxed{5}", "not_exact"),
    # added text inside a chunk
    ("<chunk>Let x be the price.</chunk>\n<chunk>2x = 10, so x = 5.</chunk>\n\n<chunk>Check: 2 * 5 = 10. "
     "Correct!</chunk>\n\\boxed{5}", "not_exact"),
    # added text outside the chunks (a title) breaks the format
    ("Segmented:\n<chunk>Let x be the price.\n2x = 10, so x = 5.\n\nCheck: 2 * 5 = 10.</chunk>\n\\boxed{5}",
     "invalid_format"),
    # changed newline: the blank line between chunks dropped (what the canonical "\n" join would do)
    ("<chunk>Let x be the price.</chunk>\n<chunk>2x = 10, so x = 5.</chunk>\n"
     "<chunk>Check: 2 * 5 = 10.</chunk>\n\\boxed{5}", "not_exact"),
    # changed newline: a line break inside a chunk turned into a space
    ("<chunk>Let x be the price. 2x = 10, so x = 5.</chunk>\n\n<chunk>Check: 2 * 5 = 10.</chunk>\n\\boxed{5}",
     "not_exact"),
    # changed newline: newlines added just inside the tags
    ("<chunk>\nLet x be the price.\n2x = 10, so x = 5.\n</chunk>\n\n"
     "<chunk>Check: 2 * 5 = 10.</chunk>\n\\boxed{5}", "not_exact"),
    # invalid format: unclosed last chunk, though deleting the tags would give the original back
    ("<chunk>Let x be the price.\n2x = 10, so x = 5.</chunk>\n\n<chunk>Check: 2 * 5 = 10.\n\\boxed{5}",
     "invalid_format"),
    # invalid format: no tags at all (the untouched original)
    (ORIGINAL, "invalid_format"),
])
def test_reconstructs_exactly_rejects_near_misses(tagged, verdict):
    assert not reconstructs_exactly(ORIGINAL, tagged)
    assert check_tagging(ORIGINAL, tagged) == verdict


def test_prompt_example_obeys_its_own_rules():
    assert reconstructs_exactly(EXAMPLE_SOLUTION, EXAMPLE_TAGGED)


def test_segmentation_messages_hold_rules_and_solution():
    msgs = segmentation_messages("  A\n\nB\n")
    assert [m["role"] for m in msgs] == ["user"]
    content = msgs[0]["content"]
    assert SEGMENTATION_RULES in content and EXAMPLE_TAGGED in content
    assert content.endswith(f"{SOLUTION_BEGIN}\nA\n\nB\n{SOLUTION_END}")


def test_chunked_solver_prompt():
    msgs = chunked_solver_messages("Start with 2. Add 3.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "<chunk>" in msgs[0]["content"] and "</chunk>" in msgs[0]["content"]
    assert "MUST" in msgs[0]["content"] and "\\boxed{}" in msgs[0]["content"]
    assert msgs[1]["content"] == "Problem: Start with 2. Add 3."
    (single,) = chunked_solver_messages("Start with 2.", system_role=False)
    assert single["role"] == "user" and single["content"].startswith(msgs[0]["content"])
    assert single["content"].endswith("\n\nProblem: Start with 2.")


# --------------------------------------------------------------------------- data builder
def test_build_with_a_random_model_keeps_nothing():
    from stepjudge.engines.hf import HFEngine

    solutions = _arith_solutions(3)
    records, stats = build_segmentation_sft(solutions, HFEngine("tiny-random"), tries=3, max_tokens=12)
    assert records == []
    assert stats["solutions"] == 3 and stats["tries"] == 3 and stats["kept"] == 0
    assert stats["samples"] == 9 and stats["exact_samples"] == 0
    assert stats["rejected_invalid_format"] + stats["rejected_not_exact"] == 3 * 3


class OracleSegmenter(Engine):
    """A real, deterministic Engine standing in for the segmenter LLM (tests only).

    It reads the solution between the prompt's START/END markers and answers a fixed script, one
    tagging per sample: 0 drops the last character (not exact), 1 returns the text untagged (invalid
    format), 2 wraps every line in its own chunk with ``format_chunks`` (exact), 3+ wraps the whole
    text in one chunk (exact too, but later, so never the one kept).
    """

    model_name = "oracle-segmenter"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, SamplingParams]] = []

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[GenerationResult]:
        self.calls.append((len(prompts), params))
        results = []
        for prompt in prompts:
            content = prompt[-1]["content"]
            solution = content.rsplit(SOLUTION_BEGIN + "\n", 1)[1].rsplit("\n" + SOLUTION_END, 1)[0]
            script = [f"<chunk>{solution[:-1]}</chunk>", solution, format_chunks(solution.split("\n")),
                      f"<chunk>{solution}</chunk>"]
            texts = [script[min(k, len(script) - 1)] for k in range(params.n)]
            results.append(GenerationResult([Completion(t, len(t.split()), "stop") for t in texts]))
        return results


def test_build_keeps_the_first_exact_tagging():
    solutions = _arith_solutions(3)
    engine = OracleSegmenter()
    records, stats = build_segmentation_sft(solutions, engine, tries=4, temperature=0.5, max_tokens=64,
                                            seed=7)
    assert [(n, p.n, p.temperature, p.max_tokens, p.seed) for n, p in engine.calls] == [(3, 4, 0.5, 64, 7)]
    assert stats == {"solutions": 3, "kept": 3, "tries": 4, "samples": 12, "rejected_invalid_format": 3,
                     "rejected_not_exact": 3, "exact_samples": 6}
    for (problem, solution), rec in zip(solutions, records, strict=True):
        assert rec["prompt"] == chunked_solver_messages(problem)
        assert rec["completion"] == [{"role": "assistant", "content": format_chunks(solution.split("\n"))}]
        assert strip_tags(rec["completion"][0]["content"]) == solution


def test_build_without_an_exact_tagging_keeps_nothing_and_batches():
    engine = OracleSegmenter()
    records, stats = build_segmentation_sft(_arith_solutions(3), engine, tries=2, batch_size=2)
    assert records == [] and stats["kept"] == 0
    assert stats["rejected_not_exact"] == 3 and stats["rejected_invalid_format"] == 3
    assert [(n, p.seed) for n, p in engine.calls] == [(2, 0), (1, 1)]


# --------------------------------------------------------------------------- file runner and CLI
@pytest.fixture
def train_verb(monkeypatch):
    """The CLI with the ``train`` verb, whether or not main.VERB_MODULES lists it yet."""
    if "stepjudge.cli.train" not in cli_main.VERB_MODULES:
        monkeypatch.setattr(cli_main, "VERB_MODULES", (*cli_main.VERB_MODULES, "stepjudge.cli.train"))
    return cli_main.main


def _write_solutions(path, pairs):
    path.write_text("".join(json.dumps({"problem": p, "solution": s}) + "\n" for p, s in pairs))


def test_segment_solutions_file(tmp_path):
    src, out = tmp_path / "solutions.jsonl", tmp_path / "sft.jsonl"
    pairs = _arith_solutions(4)
    _write_solutions(src, pairs)
    stats = segment_solutions_file({"solutions": str(src), "out": str(out), "tries": 3, "limit": 3},
                                   engine=OracleSegmenter())
    assert stats["solutions"] == 3 and stats["kept"] == 3 and stats["kept_fraction"] == 1.0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["prompt"] for r in lines] == [chunked_solver_messages(p) for p, _ in pairs[:3]]


@pytest.mark.parametrize("line, field", [
    ({"solution": "x"}, "problem"),
    ({"problem": "p", "solution": ""}, "solution"),
    ({"problem": "p", "solution": 3}, "solution"),
])
def test_read_solutions_names_file_line_and_field(tmp_path, line, field):
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps({"problem": "p", "solution": "s"}) + "\n\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError, match=rf"s\.jsonl:3 field '{field}'"):
        read_solutions(src)


def test_cli_segment_data_reports_bad_input(tmp_path, capsys, train_verb):
    src = tmp_path / "s.jsonl"
    src.write_text('{"problem": "p"}\n')
    argv = ["train", "segment-data", "--solutions", str(src), "--out", str(tmp_path / "o.jsonl")]
    assert train_verb(argv) == 1
    assert "s.jsonl:1 field 'solution'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_segment_data_runs_end_to_end(tmp_path, capsys, train_verb):
    src, out = tmp_path / "s.jsonl", tmp_path / "o.jsonl"
    _write_solutions(src, _arith_solutions(2))
    argv = ["train", "segment-data", "--solutions", str(src), "--out", str(out), "--segmenter", "tiny-random",
            "--tries", "2", "--max-tokens", "8", "--engine.num-threads", "1"]
    assert train_verb(argv) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["solutions"] == 2 and stats["kept"] == 0 and stats["samples"] == 4
    assert out.exists() and out.read_text() == ""
