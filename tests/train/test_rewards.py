"""Judge RL rewards: exact values on verdict edge cases, conversational inputs, TRL's log_metric hook."""

import pytest

from stepjudge.train.rewards import completion_text, format_penalty_reward, verdict_reward


def _reward(text, label, **kw):
    return verdict_reward(prompts=["p"], completions=[text], label=[label], **kw)[0]


@pytest.mark.parametrize("text, label, expected", [
    ("The chunk is fine.", "Positive", 0.0),                        # no box at all
    ("\\boxed{}", "Positive", 0.0),                                 # empty box
    ("\\boxed{Positive", "Positive", 0.0),                          # unterminated box
    ("\\boxed{Positive}", "Positive", 1.0),
    ("\\boxed{Positive}", "Negative", 0.0),
    ("2. Final Judgment: \\boxed{Negative}", "Negative", 1.0),
    ("\\boxed{Positive} ... on reflection \\boxed{Negative}", "Negative", 1.0),  # last verdict wins
    ("\\boxed{Positive} ... on reflection \\boxed{Negative}", "Positive", 0.0),
    ("\\boxed{ negative }", "Negative", 1.0),                       # case and spaces
    ("\\boxed{\\text{Positive}}", "Positive", 1.0),                 # \text{} wrapper
    ("x = \\boxed{12}, so \\boxed{POSITIVE}.", "Positive", 1.0),    # non-verdict boxes ignored
    ("\\boxed{Positive} then \\boxed{12}", "Positive", 1.0),        # ... even after the verdict
    ("\\boxed{Probably positive}", "Positive", 0.0),
    ("\\boxed{Negative}", "negative", 1.0),                         # label case does not matter
])
def test_verdict_reward_edge_cases(text, label, expected):
    assert _reward(text, label) == expected


def test_conversational_completions_and_content_blocks():
    convo = [[{"role": "assistant", "content": "Analysis... \\boxed{Negative}"}],
             [{"role": "assistant", "content": [{"type": "text", "text": "ok "},
                                                {"type": "text", "text": "\\boxed{Positive}"}]}],
             [{"role": "assistant", "content": "no verdict"}]]
    labels = ["Negative", "Positive", "Negative"]
    assert verdict_reward(prompts=[[]] * 3, completions=convo, label=labels) == [1.0, 1.0, 0.0]
    two_turns = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert completion_text(two_turns) == "ab"


def test_trl_keyword_arguments_are_accepted_and_bad_labels_refused():
    out = verdict_reward(prompts=["p"], completions=["\\boxed{Positive}"], completion_ids=[[1, 2]],
                         label=["Positive"], problem_id=["q1"], chunk_index=[3], trainer_state=None,
                         log_extra=lambda col, vals: None)
    assert out == [1.0]
    with pytest.raises(ValueError, match="Positive' or 'Negative"):
        verdict_reward(prompts=["p"], completions=["x"], label=["+"])
    with pytest.raises(ValueError, match="2 completions but 1 labels"):
        verdict_reward(prompts=["p", "p"], completions=["x", "y"], label=["Positive"])


def test_verdict_shares_and_class_accuracy_go_to_log_metric():
    logged: dict[str, float] = {}
    completions = ["\\boxed{Positive}", "\\boxed{Positive}", "\\boxed{Negative}", "nothing",
                   "\\boxed{Negative}"]
    labels = ["Positive", "Negative", "Negative", "Negative", "Positive"]
    rewards = verdict_reward(prompts=["p"] * 5, completions=completions, label=labels,
                             log_metric=lambda name, value: logged.__setitem__(name, value))
    assert rewards == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert logged == {"verdict/positive_share": 0.4, "verdict/negative_share": 0.4,
                      "verdict/unparsed_share": 0.2, "verdict/accuracy_positive": 0.5,
                      "verdict/accuracy_negative": 1 / 3}
    # A batch with one class only logs that class's accuracy (no 0/0).
    logged.clear()
    verdict_reward(prompts=["p"], completions=["\\boxed{Negative}"], label=["Negative"],
                   log_metric=lambda name, value: logged.__setitem__(name, value))
    assert "verdict/accuracy_positive" not in logged and logged["verdict/accuracy_negative"] == 1.0


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{Positive}", 0.0),
    ("  \\boxed{ Negative }\n", 0.0),
    ("\\boxed{\\text{Positive}}", 0.0),
    ("\\boxed{negative}", 0.0),
    ("The chunk is right. \\boxed{Positive}", -1.0),   # reasoning is not allowed in the no-CoT format
    ("\\boxed{Positive}.", -1.0),
    ("\\boxed{Positive} \\boxed{Negative}", -1.0),
    ("\\boxed{Maybe}", -1.0),
    ("", -1.0),
])
def test_format_penalty(text, expected):
    assert format_penalty_reward(prompts=["p"], completions=[text], label=["Positive"]) == [expected]
    assert format_penalty_reward(prompts=["p"], completions=[[{"role": "assistant", "content": text}]]) == [
        expected]


def test_response_prefix_is_put_back_before_reading_the_verdict():
    from stepjudge.train.rewards import format_penalty_reward, verdict_reward

    comps = ["Positive}", "Negative}", "maybe"]
    assert verdict_reward([""] * 3, comps, ["Positive", "Positive", "Negative"],
                          response_prefix=["\\boxed{"] * 3) == [1.0, 0.0, 0.0]
    assert format_penalty_reward([""] * 3, comps, response_prefix=["\\boxed{"] * 3) == [0.0, 0.0, -1.0]
