"""The rules engine as plain functions (no HTTP): loading, validation errors, matching, templates,
property-based tests with hypothesis."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from visioncascade.api.rules import (
    PLACEHOLDERS,
    Observation,
    RuleSet,
    RulesHolder,
    StageObservation,
    compile_template,
    evaluate,
    load_rules,
    parse_rules,
    render_template,
    top_of,
)
from visioncascade.errors import RulesError

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

RULES_YAML = """
version: 1
default:
  message: "no advice for {label}"
rules:
  - name: repeated-malignant
    when:
      model: lesion
      label: malignant
      seen: {label: malignant, model: lesion, at_least: 3, within_seconds: 600}
    output: {advice: "see a doctor", times: "{count}", label: "{label}"}
  - name: confident-malignant-clinic
    when:
      context: [clinic]
      model: lesion
      label: [malignant]
      min_probability: 0.8
    output: {advice: "confirm in clinic", p: "{probability}", text: "{label} at {probability} in {context}"}
  - name: not-skin
    when:
      model: gate
      label: other
    output: "point the camera at the skin {{please}}"
"""


def obs(
    lesion: tuple[float, float] = (0.2, 0.8),
    gate: tuple[float, float] = (0.9, 0.1),
    context: str = "clinic",
    at: datetime = T0,
) -> Observation:
    return Observation(
        event_id="e1",
        device_id="d1",
        session_id="s1",
        context=context,
        captured_at=at,
        stages=(
            StageObservation("gate", "1", ("skin", "other"), gate),
            StageObservation("lesion", "2", ("benign", "malignant"), lesion),
        ),
    )


@pytest.fixture
def rules() -> RuleSet:
    return parse_rules(yaml.safe_load(RULES_YAML))


def test_first_matching_rule_wins_and_fills_placeholders(rules: RuleSet) -> None:
    d = evaluate(rules, obs())
    assert d.rule == "confident-malignant-clinic"
    assert d.output == {"advice": "confirm in clinic", "p": 0.8, "text": "malignant at 0.8 in clinic"}


def test_conditions_each_exclude(rules: RuleSet) -> None:
    assert evaluate(rules, obs(context="home")).rule is None
    assert evaluate(rules, obs(lesion=(0.25, 0.75))).rule is None
    d = evaluate(rules, obs(lesion=(0.9, 0.1)))
    assert d.rule is None and d.output == {"message": "no advice for benign"}
    d = evaluate(rules, obs(gate=(0.1, 0.9), lesion=(0.9, 0.1)))
    assert d.rule == "not-skin" and d.output == "point the camera at the skin {please}"


def test_combination_of_calls_counts_the_session_history(rules: RuleSet) -> None:
    history = [T0 - timedelta(seconds=s) for s in (30, 300, 599, 601, 5000)]

    def counter(label: str, model: str | None, since: datetime, until: datetime) -> int:
        assert (label, model) == ("malignant", "lesion")
        return sum(1 for t in history if since <= t <= until)

    # 3 earlier within 600 s + this one = 4 >= 3
    d = evaluate(rules, obs(), counter)
    assert d.rule == "repeated-malignant" and d.output == {
        "advice": "see a doctor",
        "times": 4,
        "label": "malignant",
    }
    # one earlier + this one = 2 < 3: falls through to the next rule
    assert evaluate(rules, obs(), lambda *a: 1).rule == "confident-malignant-clinic"
    # without history only the event itself counts
    assert evaluate(rules, obs()).rule == "confident-malignant-clinic"


def test_default_output_without_rules_file() -> None:
    d = evaluate(RuleSet(), obs())
    assert d == evaluate(RuleSet(), obs())
    assert d.rule is None and d.output == {"label": "malignant", "probability": 0.8, "model": "lesion"}


BAD_RULES = [
    ("", "empty"),
    ("- 1\n", "top level must be a mapping"),
    ("rules: 3\n", "'rules' must be a list"),
    ("rules: []\nextra: 1\n", "unknown key(s) ['extra']"),
    ("version: 2\nrules: []\n", "version must be 1"),
    ("rules:\n  - when: {}\n    output: x\n", "rules[0].name: a rule needs a name"),
    ("rules:\n  - {name: a, output: x}\n  - {name: a, output: y}\n", "duplicate rule name 'a'"),
    ("rules:\n  - {name: a}\n", "missing 'output'"),
    ("rules:\n  - {name: a, output: x, when: {colour: red}}\n", "unknown key(s) ['colour']"),
    (
        "rules:\n  - {name: a, output: x, when: {min_probability: 1.5}}\n",
        "min_probability: must be between 0 and 1",
    ),
    (
        "rules:\n  - {name: a, output: x, when: {min_probability: high}}\n",
        "min_probability: expected a number",
    ),
    (
        "rules:\n  - {name: a, output: x, when: {context: []}}\n",
        "when.context: expected a string or a non-empty",
    ),
    ("rules:\n  - {name: a, output: x, when: {label: [1, 2]}}\n", "when.label: expected a string"),
    ("rules:\n  - {name: a, output: '{labl}'}\n", "unknown placeholder {labl}"),
    ("rules:\n  - {name: a, output: '{__class__}'}\n", "unknown placeholder {__class__}"),
    ("rules:\n  - {name: a, output: 'open { brace'}\n", "unbalanced '{'"),
    (
        "rules:\n  - {name: a, output: x, when: {seen: {label: m, at_least: 0, within_seconds: 5}}}\n",
        "at_least",
    ),
    ("rules:\n  - {name: a, output: x, when: {seen: {label: m, at_least: 2}}}\n", "missing 'within_seconds'"),
    (
        "rules:\n  - {name: a, output: x, when: {seen: {label: m, at_least: 2, within_seconds: -1}}}\n",
        "within_seconds",
    ),
    ("rules:\n  - {name: a, output: !!python/object/apply:os.system [ls]}\n", "not valid YAML"),
    ("a: &x [1]\nrules: *x\n", "aliases"),
    ("rules: [\n", "not valid YAML"),
    ("rules:\n  - {name: a, output: .nan}\n", "must be finite"),
    (
        "rules:\n  - name: a\n    output: x\n    name: b\n",
        "the key 'name' is given twice in one mapping (lines 2 and 4); keep one of them",
    ),
    (
        "rules:\n  - name: a\n    when: {label: m, label: n}\n    output: x\n",
        "the key 'label' is given twice in one mapping (both on line 3)",
    ),
    ("default: {a: 1}\nrules: []\ndefault: {b: 2}\n", "the key 'default' is given twice"),
    pytest.param(
        "rules: []\ndefault: <NESTED>\n",  # lists nested deeper than the recursion limit, at run time
        "nests lists or mappings too deeply",
        id="nested-too-deep",
    ),
    pytest.param(
        "rules: []\ndefault: {day: 2024-13-45}\n",
        "month must be in 1..12); quote it if it is meant as text",
        id="date-that-does-not-exist",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_RULES)
def test_bad_rules_files_fail_with_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    # The limit is 1,000 in a fresh process and 5,000 once coremltools (imported by other tests) raised it.
    depth = sys.getrecursionlimit() + 100
    path.write_text(text.replace("<NESTED>", "[" * depth + "]" * depth))
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_numbers_in_scientific_notation_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e-9, 6e2 and 1.5e3 (no dot in the mantissa, or no sign in the exponent) as strings;
    they are taken as the numbers they spell, not refused as "expected a number"."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: a\n    output: x\n    when:\n      min_probability: 5e-1\n"
        "      seen: [{label: m, at_least: 2, within_seconds: 6e2}, {label: n, at_least: 1, within_seconds: 1e-9}]\n"
        "  - name: b\n    output: y\n    when: {seen: {label: m, at_least: 1, within_seconds: 1.5e3}}\n"
    )
    a, b = load_rules(path).rules
    assert a.min_probability == 0.5
    assert [c.within_seconds for c in (*a.seen, *b.seen)] == [600.0, 1e-9, 1500.0]
    path.write_text("rules:\n  - {name: a, output: x, when: {min_probability: 2e0}}\n")
    with pytest.raises(RulesError, match=r"min_probability: must be between 0 and 1, got 2\.0"):
        load_rules(path)
    path.write_text("rules:\n  - {name: a, output: x, when: {min_probability: 5e-1x}}\n")
    with pytest.raises(RulesError, match="min_probability: expected a number, got '5e-1x'"):
        load_rules(path)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")


def test_holder_reload_swaps_atomically_and_keeps_old_rules_on_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML)
    holder = RulesHolder(path)
    before = holder.rules
    assert not holder.changed()
    path.write_text("rules: [\n")
    assert holder.changed()
    assert holder.reload() is False
    assert holder.rules is before and "not valid YAML" in (holder.last_error or "")
    assert holder.failures == 1 and not holder.changed()
    path.write_text("rules: []\ndefault: {x: 1}\n")
    assert holder.reload() is True
    assert holder.rules.rules == () and holder.rules.default == {"x": 1}
    assert holder.last_error is None and holder.reloads == 1


# ------------------------------------------------------------------------------ property-based tests

labels_st = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True)


@st.composite
def stages_st(draw: Any) -> StageObservation:
    labels = draw(labels_st)
    weights = draw(st.lists(st.floats(0.001, 1.0), min_size=len(labels), max_size=len(labels)))
    total = sum(weights)
    return StageObservation(
        draw(st.sampled_from(["gate", "lesion", "x"])), "1", tuple(labels), tuple(w / total for w in weights)
    )


@st.composite
def observations(draw: Any) -> Observation:
    return Observation(
        event_id="e",
        device_id=draw(st.text(max_size=5)),
        session_id="s",
        context=draw(st.sampled_from(["clinic", "home", "lab"])),
        captured_at=T0,
        stages=tuple(draw(st.lists(stages_st(), min_size=1, max_size=3))),
    )


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet="ab {}", max_size=10))
templates = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=8,
)


@st.composite
def rule_sets(draw: Any) -> dict[str, Any]:
    rules = []
    for i in range(draw(st.integers(0, 4))):
        when: dict[str, Any] = {}
        if draw(st.booleans()):
            when["context"] = draw(
                st.lists(st.sampled_from(["clinic", "home", "lab"]), min_size=1, max_size=3)
            )
        if draw(st.booleans()):
            when["model"] = draw(st.sampled_from(["gate", "lesion", "x"]))
        if draw(st.booleans()):
            when["min_probability"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            when["seen"] = {"label": "a", "at_least": draw(st.integers(1, 5)), "within_seconds": 60}
        rules.append({"name": f"r{i}", "when": when, "output": {"rule": i, "label": "{label}"}})
    return {"rules": rules, "default": {"default": True}}


@settings(max_examples=200, deadline=None)
@given(data=rule_sets(), o=observations(), history=st.integers(0, 6))
def test_evaluate_is_first_match_and_never_fails(data: dict[str, Any], o: Observation, history: int) -> None:
    rs = parse_rules(data)
    d = evaluate(rs, o, lambda *a: history)
    assert d == evaluate(rs, o, lambda *a: history)  # deterministic
    matching = []
    for i, rule in enumerate(rs.rules):
        stage = (
            o.stages[-1] if rule.model is None else next((s for s in o.stages if s.model == rule.model), None)
        )
        ok = stage is not None
        ok = ok and (rule.contexts is None or o.context in rule.contexts)
        ok = ok and (rule.min_probability is None or top_of(stage)[1] >= rule.min_probability)  # type: ignore[arg-type]
        for cond in rule.seen:
            own = sum(1 for s in o.stages if top_of(s)[0] == cond.label)
            ok = ok and own + history >= cond.at_least
        if ok:
            matching.append(i)
    if matching:
        assert d.rule == f"r{matching[0]}" and d.output["rule"] == matching[0]
        assert (
            d.output["label"]
            == top_of(
                o.stages[-1]
                if rs.rules[matching[0]].model is None
                else next(s for s in o.stages if s.model == rs.rules[matching[0]].model)
            )[0]
        )
    else:
        assert d.rule is None and d.output == {"default": True}


@settings(max_examples=200, deadline=None)
@given(template=templates, values=st.dictionaries(st.sampled_from(PLACEHOLDERS), json_leaf, max_size=5))
def test_rendering_keeps_the_shape_and_never_executes(template: Any, values: dict[str, Any]) -> None:
    out = render_template(template, values)

    def shape(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: shape(v) for k, v in x.items()}
        if isinstance(x, list):
            return [shape(v) for v in x]
        return "leaf"

    if not isinstance(template, str):
        assert shape(out) == shape(template)


@settings(max_examples=300, deadline=None)
@given(
    template=templates | st.text(alphabet="ab{}", max_size=12).map(lambda t: t.replace("b", "{label}")),
    values=st.dictionaries(st.sampled_from(PLACEHOLDERS), json_leaf | st.floats(0, 1), max_size=11),
)
def test_a_compiled_template_renders_exactly_like_render_template(
    template: Any, values: dict[str, Any]
) -> None:
    assert compile_template(template).render(values) == render_template(template, values)


def test_the_captured_at_text_is_made_only_for_templates_that_show_it() -> None:
    rs = parse_rules({"rules": [{"name": "r", "output": {"at": "taken {captured_at}", "n": 1}}]})
    assert evaluate(rs, obs()).output == {"at": f"taken {T0.isoformat()}", "n": 1}
    assert "captured_at" not in rs.default_template.names
    assert evaluate(RuleSet(rules=()), obs()).output == {
        "label": "malignant",
        "probability": 0.8,
        "model": "lesion",
    }


@settings(max_examples=100, deadline=None)
@given(text_=st.text(max_size=30))
def test_any_template_string_is_either_accepted_or_refused_cleanly(text_: str) -> None:
    try:
        rs = parse_rules({"rules": [{"name": "r", "output": text_}]})
    except RulesError:
        return
    out = evaluate(rs, obs()).output
    assert isinstance(out, str | float | int | type(None))


@settings(max_examples=100, deadline=None)
@given(probs=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6), level=st.floats(0, 1))
def test_min_probability_is_monotonic(probs: list[float], level: float) -> None:
    total = sum(probs)
    if total == 0:
        return
    stage = StageObservation(
        "m", "1", tuple(f"l{i}" for i in range(len(probs))), tuple(p / total for p in probs)
    )
    o = Observation("e", "d", "s", "c", T0, (stage,))
    rs = parse_rules({"rules": [{"name": "hi", "when": {"min_probability": level}, "output": 1}]})
    matched = evaluate(rs, o).rule == "hi"
    assert matched == (top_of(stage)[1] >= level)
    assert not math.isnan(top_of(stage)[1])
