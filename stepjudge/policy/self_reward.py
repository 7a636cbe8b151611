"""What LaSeR's training and its evaluation must share: the solver prompt, the reserved token z_c and
the one-token self-reward read.

Training reads log pi(z_c | x, y, EOS) inside the update pass; evaluation must read the same
quantity, so both build the prompt with :func:`solver_messages` and evaluation scores
``rendered prompt + response + EOS`` followed by z_c (:func:`self_reward_logprobs`), which is the
token sequence the trainer forwards (up to re-tokenisation of the response text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from stepjudge.engines.base import Capability, ChatMessages, Engine

__all__ = ["PLAIN_INSTRUCTION", "Z_C_BY_FAMILY", "SolverStyle", "default_z_c_token", "self_reward_logprobs",
           "solver_messages", "z_c_token_id"]

SolverStyle = Literal["fewshot-chat", "plain"]

PLAIN_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# Reserved tokens per tokenizer family, by token string (the ids differ per vocabulary): the paper's
# Qwen2.5 <|vision_start|> (151652) and Llama-3 <|reserved_special_token_0|> (128002); SmolLM2's
# <repo_name> (3), a special token chat models never produce (log pi about -17.7 at the z_c slot).
Z_C_BY_FAMILY: tuple[str, ...] = ("<|vision_start|>", "<|reserved_special_token_0|>", "<repo_name>")


def default_z_c_token(tokenizer: Any) -> int:
    """The family's reserved token id (first of :data:`Z_C_BY_FAMILY` in the vocabulary)."""
    vocab = tokenizer.get_vocab()
    for token in Z_C_BY_FAMILY:
        if token in vocab:
            return int(vocab[token])
    raise ValueError(f"no default z_c for this tokenizer (none of {Z_C_BY_FAMILY}); set z_c_token_id "
                     "to an unused special token id")


def z_c_token_id(tokenizer: Any, configured: int | None) -> int:
    """``configured`` or the family default; refuses EOS/pad (the slot must be a token of its own)."""
    token = default_z_c_token(tokenizer) if configured is None else int(configured)
    if not 0 <= token < len(tokenizer):
        raise ValueError(f"z_c token id {token} is outside the vocabulary (size {len(tokenizer)})")
    if token in {tokenizer.eos_token_id, tokenizer.pad_token_id}:
        raise ValueError(f"z_c token id {token} is the EOS or pad token; choose an unused special token")
    return token


def solver_messages(problem: str, style: SolverStyle, examples: Sequence[str] = ()) -> ChatMessages:
    """The chat prompt of a LaSeR policy: it answers in one assistant turn ending with EOS.

    ``fewshot-chat``: each worked example (``problem line\\nsolution``, a task's few-shot examples)
    is an earlier user/assistant exchange, so a small chat model answers in that format and closes
    its turn; ``plain``: the problem and the paper's instruction (Qwen2.5 base runs).
    """
    if style == "plain":
        return [{"role": "user", "content": f"{problem}\n{PLAIN_INSTRUCTION}"}]
    messages: ChatMessages = []
    for ex in examples:
        question, _, solution = ex.partition("\n")
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
    return [*messages, {"role": "user", "content": problem}]


def self_reward_logprobs(engine: Engine, prompts: Sequence[str | ChatMessages], responses: Sequence[str],
                         z_c: int) -> list[float]:
    """log pi(z_c | x, y, EOS) for each (prompt, response): one extra token per response.

    The prompt is rendered with the chat template (assistant turn opened), the response and the EOS
    token appended as text, and the log-prob of z_c read there (prompt log-probs: in-process with the
    ``hf`` engine, or an ``echo`` request to a served model).
    """
    engine.require(Capability.TOKENIZER, Capability.CHAT_RENDERING, Capability.PROMPT_LOGPROBS,
                   needed_for="reading the self-reward token")
    tok = engine.tokenizer
    eos, z_text = tok.eos_token, tok.convert_ids_to_tokens(z_c)
    heads = [engine.render(p) + r + eos for p, r in zip(prompts, responses, strict=True)]
    scored = engine.prompt_logprobs(heads, [z_text] * len(heads))
    out = []
    for s in scored:
        if len(s.logprobs) != 1 or s.logprobs[0] is None:
            raise ValueError(f"z_c ({z_text!r}) did not tokenize to one scored token: {s.tokens}")
        out.append(float(s.logprobs[0]))
    return out
