"""`train critic`: Stage I then Stage II on RLOO, one step each on a tiny model, and the rewards TRL received
checked against the reward functions applied to the logged critiques and refinements."""

import json

import pytest
import torch
from pydantic import ValidationError

from stepjudge.errors import DataError
from stepjudge.grading import Grader
from stepjudge.judge.critique import SOLVE_PREFILL, critic_messages, parse_final_verdict
from stepjudge.tasks.arith import generate_problems
from stepjudge.train.core import train_to_final
from stepjudge.train.critic import CriticRLConfig, load_critic_rows, make_stage_trainer, train_critic
from stepjudge.train.critique_rl import RefinementReward, discrimination_reward, refinement_reward
from stepjudge.train.rewards import completion_text, resolve_rewards

torch.set_num_threads(1)
VERDICT_ONLY = "Correctness of the final answer: Correct"


def _rows():
    rows = []
    for i, p in enumerate(generate_problems(n=4, steps=2, seed=11)):
        answer = p.answer if i % 2 == 0 else str(int(p.answer) + 1)
        response = f"The answer is {answer}."
        rows.append({"prompt": critic_messages(p.problem, SOLVE_PREFILL + response), "truth": i % 2 == 0,
                     "response": response, "problem_json": json.dumps(p.to_dict())})
    return rows


@pytest.fixture(scope="module")
def critic(tmp_path_factory):
    """tiny-random rewired to write one fixed critique ("Correctness of the final answer: Correct") whatever the
    prompt, so the rollout's rewards are a known mix of +1 and -1 instead of all 'missing'.

    Attention and MLP outputs are zeroed, so the last hidden state is the (normed) embedding of the current
    token; an untied output head then maps each token of the chain to the next one."""
    from transformers import AutoModelForCausalLM

    from stepjudge.models.registry import load_tokenizer, resolve_model

    out = tmp_path_factory.mktemp("chain")
    path = resolve_model("tiny-random")
    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    last = tok.apply_chat_template(_rows()[0]["prompt"], add_generation_prompt=True, tokenize=True)
    last = (last["input_ids"] if isinstance(last, dict) or hasattr(last, "keys") else last)[-1]
    chain = [last, *tok(VERDICT_ONLY, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
        head.weight.zero_()
        for src, dst in zip(chain, chain[1:], strict=False):
            h = model.model.norm(model.model.embed_tokens.weight[src])
            head.weight[dst] = 60 * h / h.norm()
    model.lm_head = head
    model.config.tie_word_embeddings = False
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _cfg(tmp_path, critic, **kw):
    data = tmp_path / "rl_rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    return CriticRLConfig(**{"model": critic, "train_data": str(data), "out": str(tmp_path / "run"),
                             "stage1_steps": 1, "stage2_steps": 1, "num_generations": 2, "per_device_batch_size": 4,
                             "max_completion_length": 16, "num_iterations": 1, "learning_rate": 1e-4,
                             "save_steps": 1, "use_cpu": True, "actor": {"model": "tiny-random"},
                             "refine_max_tokens": 8, **kw})


def _truth_of(rows):
    return {r["prompt"][0]["content"]: r["truth"] for r in rows}


def test_stage_one_then_two_pay_what_the_reward_functions_say(tmp_path, critic):
    from stepjudge.engines.hf import HFEngine

    cfg = _cfg(tmp_path, critic)
    rows = load_critic_rows(cfg.train_data)
    truth = _truth_of(rows)

    s1 = make_stage_trainer(cfg, 1, rows, resolve_rewards(cfg.rewards))
    assert type(s1).__name__ == "RLOOTrainer" and s1.args.beta == 0.01 and s1.args.max_steps == 1
    assert s1.args.normalize_advantages is True and s1.ref_model is not None  # KL to the SFT critic
    train_to_final(s1, tmp_path / "run" / "stage1", "critic Stage I")
    completions = [completion_text(c) for c in s1._logs["completion"]]
    verdicts = [parse_final_verdict(c) for c in completions]
    truths = [truth[p[0]["content"]] for p in s1._logs["prompt"]]
    assert verdicts == [True] * 4  # the rewired critic always states its verdict
    expected = [discrimination_reward(v, t) for v, t in zip(verdicts, truths, strict=True)]
    assert list(s1._logs["rewards"]["critique_discrimination"]) == expected
    assert expected == [1.0 if t else -1.0 for t in truths]
    log1 = json.loads((tmp_path / "run" / "stage1" / "train_log.json").read_text())
    assert "critique/verdict_correct_share" in log1[0] and "critique/length" in log1[0]

    with Grader(timeout_s=5.0) as grader:
        reward = RefinementReward(HFEngine("tiny-random"), grader, max_tokens=8)
        s2 = make_stage_trainer(cfg, 2, rows, [reward])
        assert s2.ref_model.name_or_path == str(tmp_path / "run" / "stage1" / "final")  # KL to Stage I
        train_to_final(s2, tmp_path / "run" / "stage2", "critic Stage II")
        completions = [completion_text(c) for c in s2._logs["completion"]]
        refined = list(s2._logs["extra"]["refined_correct"])
        problems = [json.loads(r["problem_json"]) for r in rows]
        by_prompt = {r["prompt"][0]["content"]: p for r, p in zip(rows, problems, strict=True)}
        from stepjudge.data.records import Problem

        regraded = reward.grade([Problem.from_dict(by_prompt[p[0]["content"]]) for p in s2._logs["prompt"]],
                                list(s2._logs["extra"]["refinement"]))
    assert refined == regraded
    truths = [truth[p[0]["content"]] for p in s2._logs["prompt"]]
    expected = [refinement_reward(parse_final_verdict(c), t, r) for c, t, r in zip(completions, truths, refined,
                                                                                   strict=True)]
    assert list(s2._logs["rewards"]["refine_critique_rl"]) == pytest.approx(expected)
    assert [e for e, t in zip(expected, truths, strict=True) if not t] == [-1.0] * truths.count(False)
    log2 = json.loads((tmp_path / "run" / "stage2" / "train_log.json").read_text())
    assert {"critique/acc_refine", "critique/c2c", "critique/i2c", "critique/c2i", "critique/i2i"} <= set(log2[0])


def test_train_critic_runs_both_stages_then_skips_them_when_done(tmp_path, critic):
    cfg = _cfg(tmp_path, critic)
    finals = train_critic(cfg)
    assert finals == {"stage1": str(tmp_path / "run" / "stage1" / "final"),
                      "stage2": str(tmp_path / "run" / "stage2" / "final")}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stage1"]["steps"] == 1 and summary["stage2"]["steps"] == 1
    assert summary["stage2_reward"] == "critique_rl" and summary["stage1"]["acc_refine"] is None
    mtime = (tmp_path / "run" / "stage2" / "final" / "model.safetensors").stat().st_mtime
    assert train_critic(cfg) == finals  # done stages are skipped
    assert (tmp_path / "run" / "stage2" / "final" / "model.safetensors").stat().st_mtime == mtime


def test_config_and_rows_are_checked_before_any_model_loads(tmp_path):
    with pytest.raises(ValidationError, match="max_steps is per stage"):
        CriticRLConfig(train_data="d", out="o", max_steps=3)
    with pytest.raises(ValidationError, match="nothing to train"):
        CriticRLConfig(train_data="d", out="o", stage1_steps=0, stage2_steps=0)
    with pytest.raises(ValidationError):
        CriticRLConfig(train_data="d", out="o", stage2_reward="nope")
    cfg = CriticRLConfig(train_data="d", out="o")
    assert (cfg.learning_rate, cfg.beta, cfg.num_generations, cfg.temperature, cfg.max_completion_length,
            cfg.num_iterations, cfg.stage1_steps, cfg.stage2_steps, cfg.dis_bonus, cfg.rewards) == (
        5e-7, 0.01, 4, 0.7, 1536, 2, 500, 500, 0.2, ["critique_dis"])
    bad = tmp_path / "rows.jsonl"
    row = _rows()[0]
    bad.write_text(json.dumps({**row, "truth": "yes"}) + "\n")
    with pytest.raises(DataError, match=r"rows.jsonl:1.*truth"):
        load_critic_rows(str(bad))
