"""Judge prompts and vote aggregation."""

from stepjudge.judge.prompts import critic_messages, prm_messages, stepwise_judge_messages, tag_paragraphs
from stepjudge.judge.verdicts import majority_index, majority_verdict, parse_prm_verdict


def test_majority_verdict_rules():
    assert majority_verdict(["Positive", "Negative", "Negative"]) == "Negative"
    assert majority_verdict(["Positive", None, None]) == "Positive"  # unparsed samples are dropped
    assert majority_verdict(["Positive", "Negative"]) == "Negative"  # tie -> Negative
    assert majority_verdict([None, None]) == "Positive"
    assert majority_verdict([None], unparsed_as="Negative") == "Negative"


def test_majority_index_first_seen_wins_ties():
    assert majority_index([2, -1, 2, None]) == 2
    assert majority_index([3, 1]) == 3
    assert majority_index([None, None]) is None


def test_parse_prm_verdict():
    assert parse_prm_verdict(" +") == "+" and parse_prm_verdict("-\n") == "-" and parse_prm_verdict("ok") is None


def test_critic_prompt_tags_paragraphs_from_zero():
    assert tag_paragraphs(["a", "b"]) == "<paragraph_0>\na\n</paragraph_0>\n\n<paragraph_1>\nb\n</paragraph_1>"
    msg = critic_messages("P?", ["a", "b"])[0]["content"]
    assert "[Math Problem]\n\nP?\n\n[Solution]\n\n<paragraph_0>" in msg
    assert msg.endswith("Please put your final answer (i.e., the index) in \\boxed{}.")


def test_stepwise_prompt_has_problem_history_and_chunk():
    m = stepwise_judge_messages("P?", ["s1", "s2"], "s3")[0]["content"]
    assert "Mathematical Problem:\nP?" in m and "Historical Reasoning Path:\ns1\n\ns2" in m
    assert m.endswith("New Reasoning Chunk:\ns3") and "\\boxed{Positive}" in m and "\\boxed{Negative}" in m
    assert "(none" in stepwise_judge_messages("P?", [], "s1")[0]["content"]


def test_prm_messages_multi_turn():
    m = prm_messages("P?", ["a", "b", "c"])
    assert [x["role"] for x in m] == ["user", "assistant", "user", "assistant", "user"]
    assert m[0]["content"] == "P?\n\na" and m[1]["content"] == "+" and m[4]["content"] == "c"
