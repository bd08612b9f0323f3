"""Reading coder and judge replies."""

from __future__ import annotations

from kernelwright.agents.parsing import extract_candidate, parse_verdict

CANDIDATE = "import torch\n\nclass ModelNew(torch.nn.Module):\n    pass\n"


def test_single_python_block():
    reply = f"Here it is:\n```python\n{CANDIDATE}```\nDone."
    assert extract_candidate(reply) == CANDIDATE


def test_last_block_defining_model_new_wins_and_other_blocks_are_ignored():
    draft = CANDIDATE.replace("pass", "x = 1")
    reply = (
        f"```cpp\n__global__ void k() {{}}\n```\nDraft:\n```python\n{draft}```\n"
        f"Helper:\n```python\ndef helper():\n    return 2\n```\nFinal:\n```py\n{CANDIDATE}```\n"
    )
    assert extract_candidate(reply) == CANDIDATE


def test_unfenced_reply_is_taken_only_when_it_is_the_candidate():
    assert extract_candidate(CANDIDATE) == CANDIDATE
    assert extract_candidate("I could not do it, sorry.") is None
    assert extract_candidate("class ModelNew is what you want, but I won't write it") is None


def test_no_code_when_blocks_hold_no_model_new():
    assert extract_candidate("```python\nprint(1)\n```") is None
    assert extract_candidate("") is None


def test_block_with_a_syntax_error_is_still_the_candidate():
    broken = "class ModelNew(:\n    pass\n"
    assert extract_candidate(f"```python\n{broken}```") == broken


def test_judge_json_bare_fenced_and_in_prose():
    fields = parse_verdict(
        '{"bottleneck": "uncoalesced loads", "plan": "tile via smem"}', "optimize"
    )
    assert fields.parsed and fields.fields["plan"] == "tile via smem"
    fenced = parse_verdict('Sure.\n```json\n{"issue": "off by one", "fix": "use <"}\n```', "repair")
    assert fenced.fields == {"issue": "off by one", "fix": "use <"}
    prose = parse_verdict('I think {"issue": "race", "fix": "add __syncthreads"} is it.', "repair")
    assert prose.fields["fix"] == "add __syncthreads"


def test_unparsable_or_incomplete_judge_reply_is_free_text():
    for reply, mode in [
        ("The kernel is slow because of bank conflicts.", "optimize"),
        ('{"issue": "x"}', "repair"),
        ('{"bottleneck": "", "plan": "p"}', "optimize"),
        ("{not json}", "repair"),
    ]:
        verdict = parse_verdict(reply, mode)
        assert not verdict.parsed and verdict.text == reply
