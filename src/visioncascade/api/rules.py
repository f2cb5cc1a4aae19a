"""The rules engine: which custom output answers a cascade's predictions. Plain functions, no HTTP.

A rules file is YAML::

    version: 1
    default:                      # the output when no rule matches (optional)
      message: "{label} ({probability})"
    rules:                        # ordered; the first rule whose conditions all hold wins
      - name: confident-malignant-repeated
        when:
          context: [clinic, home]           # the event's context is one of these (or one string)
          model: lesion                     # which stage the label conditions look at (default: last stage)
          label: [malignant]                # that stage's top label equals / is in this set
          min_probability: 0.8              # that stage's top probability >= this level
          seen:                             # the "combination of calls": this session saw the label
            label: malignant                #   at least `at_least` times within the last
            at_least: 3                     #   `within_seconds` seconds (this event included),
            within_seconds: 600             #   optionally only from stage `model`
        output:
          advice: "See a dermatologist"
          label: "{label}"
          probability: "{probability}"

Outputs are JSON templates: in every string, ``{name}`` is replaced by a placeholder value
(:data:`PLACEHOLDERS`); a string that is exactly one placeholder becomes the typed value (a number for
``{probability}``). ``{{`` and ``}}`` stand for literal braces. Nothing in a rules file is ever executed.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import yaml

from visioncascade._yaml import DuplicateKeyError, UniqueKeyLoader
from visioncascade.errors import RulesError

__all__ = [
    "PLACEHOLDERS",
    "Decision",
    "Observation",
    "Rule",
    "RuleSet",
    "RulesHolder",
    "SeenCondition",
    "SeenCounter",
    "Stage",
    "StageObservation",
    "count_seen",
    "evaluate",
    "load_rules",
    "parse_rules",
    "render_template",
    "top_of",
]

#: Placeholders an output template may use.
PLACEHOLDERS: tuple[str, ...] = (
    "label",
    "probability",
    "model",
    "version",
    "context",
    "device_id",
    "session_id",
    "event_id",
    "captured_at",
    "rule",
    "count",
)
_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_TOKEN_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_MAX_WINDOW_SECONDS = 30 * 24 * 3600
_DEFAULT_OUTPUT: dict[str, Any] = {"label": "{label}", "probability": "{probability}", "model": "{model}"}


class Stage(Protocol):
    """What the rules read of a stage: :class:`StageObservation`, or the API's validated ``StageIn``."""

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def labels(self) -> Sequence[str]: ...

    @property
    def probabilities(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class StageObservation:
    """One stage of a cascade: a model's probability distribution over its labels."""

    model: str
    version: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]


class Observation(NamedTuple):
    """What the rules see of one event (a named tuple: made for every stored event, so made cheaply)."""

    event_id: str
    device_id: str
    session_id: str
    context: str
    captured_at: datetime
    stages: Sequence[Stage]  # a tuple of StageObservation, or the validated stages as they came


@dataclass(frozen=True)
class SeenCondition:
    """This session saw ``label`` (optionally from stage ``model``) ≥ ``at_least`` times in the window."""

    label: str
    at_least: int
    within_seconds: float
    model: str | None = None
    window: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", timedelta(seconds=self.within_seconds))


@dataclass(frozen=True)
class Rule:
    """One named rule: conditions (all must hold) and the output template used when they do."""

    name: str
    output: Any
    contexts: frozenset[str] | None = None
    model: str | None = None
    labels: frozenset[str] | None = None
    min_probability: float | None = None
    seen: tuple[SeenCondition, ...] = ()

    def __post_init__(self) -> None:
        # The output template, compiled once (not a field: equality and repr stay the fields').
        object.__setattr__(self, "template", compile_template(self.output))

    template: _Template = field(init=False, repr=False, compare=False)


@dataclass(frozen=True)
class RuleSet:
    """An ordered list of rules and the default output; immutable so it can be swapped atomically."""

    rules: tuple[Rule, ...] = ()
    default: Any = field(default_factory=lambda: dict(_DEFAULT_OUTPUT))
    source: str = "<built-in default>"
    default_template: _Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_template", compile_template(self.default))

    @property
    def max_window_seconds(self) -> float:
        """The longest ``seen`` window any rule uses (0 when no rule looks at session history)."""
        return max((s.within_seconds for r in self.rules for s in r.seen), default=0.0)

    @property
    def seen_labels(self) -> frozenset[str]:
        """The labels any ``seen`` condition counts (the only history the rules need)."""
        return frozenset(c.label for r in self.rules for c in r.seen)

    @property
    def needs_history(self) -> bool:
        """Whether evaluating these rules needs the session's earlier events."""
        return self.max_window_seconds > 0


class Decision(NamedTuple):
    """The rules' answer for one event: the rendered output and the matching rule's name (None: default)."""

    output: Any
    rule: str | None


#: ``counter(label, model, since, until) -> int``: how many stages of this session, captured in
#: ``[since, until]``, had ``label`` as top label (only stages of ``model`` unless it is None), the
#: evaluated event excluded.
SeenCounter = Callable[[str, "str | None", datetime, datetime], int]


def top_of(stage: Stage) -> tuple[str, float]:
    """The top label of a stage and its probability (the first one on ties)."""
    probabilities = stage.probabilities
    best, top = 0, probabilities[0]
    for i in range(1, len(probabilities)):
        if probabilities[i] > top:
            best, top = i, probabilities[i]
    return stage.labels[best], float(top)


def entropy(probabilities: Sequence[float]) -> float:
    """Shannon entropy of a distribution, in nats."""
    log = math.log
    return float(-sum([p * log(p) for p in probabilities if p > 0.0]))


def _no_history(label: str, model: str | None, since: datetime, until: datetime) -> int:
    return 0


def count_seen(
    obs: Observation,
    cond: SeenCondition,
    counter: SeenCounter,
    tops: Sequence[tuple[str, float]] | None = None,
) -> int:
    """How many times the session saw ``cond.label`` within the window ending at this event, it included.

    ``tops`` are the stages' :func:`top_of`, when the caller has them already.
    """
    if tops is None:
        tops = [top_of(s) for s in obs.stages]
    want, model = cond.label, cond.model
    own = 0
    for s, (label, _) in zip(obs.stages, tops, strict=True):
        if label == want and (model is None or s.model == model):
            own += 1
    at = obs.captured_at
    return own + counter(want, model, at - cond.window, at)


def _select_stage(stages: Sequence[Stage], model: str | None) -> int | None:
    """The index of the stage a rule looks at: the first of ``model``, or the last one."""
    if not stages:
        return None
    if model is None:
        return len(stages) - 1
    for i, stage in enumerate(stages):
        if stage.model == model:
            return i
    return None


def evaluate(
    rules: RuleSet,
    obs: Observation,
    counter: SeenCounter | None = None,
    tops: Sequence[tuple[str, float]] | None = None,
) -> Decision:
    """Apply ``rules`` to ``obs``: the first rule whose conditions all hold gives the output.

    Args:
        rules: The rule set.
        obs: The event.
        counter: Counts the session's earlier labels (see :data:`SeenCounter`); without one, only the
            event itself counts.
        tops: ``top_of`` of each stage, when the caller computed them already (they are computed once
            here otherwise).

    Returns:
        The rendered output and the matching rule's name, or the default output and ``None``.
    """
    counter = counter or _no_history
    stages = obs.stages
    if tops is None:
        tops = [top_of(s) for s in stages]
    for rule in rules.rules:
        if rule.contexts is not None and obs.context not in rule.contexts:
            continue
        i = _select_stage(stages, rule.model)
        if i is None:
            continue
        label, probability = tops[i]
        if rule.labels is not None and label not in rule.labels:
            continue
        if rule.min_probability is not None and probability < rule.min_probability:
            continue
        count = None
        if rule.seen:
            counts = [count_seen(obs, cond, counter, tops) for cond in rule.seen]
            if any(c < cond.at_least for c, cond in zip(counts, rule.seen, strict=True)):
                continue
            count = counts[0]
        template = rule.template
        return Decision(
            template.render(_values(obs, stages[i], tops[i], rule.name, count, template)), rule.name
        )
    i = _select_stage(stages, None)
    template = rules.default_template
    values = _values(
        obs, stages[i] if i is not None else None, tops[i] if i is not None else None, None, None, template
    )
    return Decision(template.render(values), None)


def _values(
    obs: Observation,
    stage: Stage | None,
    top: tuple[str, float] | None,
    rule: str | None,
    count: int | None,
    template: _Template,
) -> dict[str, Any]:
    label, probability = top if top is not None else (None, None)
    return {
        "label": label,
        "probability": probability,
        "model": stage.model if stage is not None else None,
        "version": stage.version if stage is not None else None,
        "context": obs.context,
        "device_id": obs.device_id,
        "session_id": obs.session_id,
        "event_id": obs.event_id,
        # the only value that costs something to make: only when the template shows it
        "captured_at": obs.captured_at.isoformat() if "captured_at" in template.names else None,
        "rule": rule,
        "count": count,
    }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(value)


def render_template(template: Any, values: Mapping[str, Any]) -> Any:
    """Fill the placeholders of a JSON template (dicts, lists, strings, numbers, booleans, null).

    A string that is exactly ``{name}`` becomes the value itself (typed); otherwise placeholders are
    replaced by their text. Unknown placeholders were rejected when the rules were loaded; here they are
    left as they are.
    """
    if isinstance(template, str):
        match = _PLACEHOLDER_RE.fullmatch(template)
        if match and match.group(1) is not None and match.group(1) in values:
            return values[match.group(1)]

        def sub(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole == "{{":
                return "{"
            if whole == "}}":
                return "}"
            name = m.group(1)
            return _text(values[name]) if name in values else whole

        return _PLACEHOLDER_RE.sub(sub, template)
    if isinstance(template, Mapping):
        return {str(k): render_template(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render_template(v, values) for v in template]
    return template


class _Template:
    """An output template compiled once: ``render(values)`` equals ``render_template(template, values)``.

    ``names`` are the placeholders it uses. Rules are evaluated for every stored event, so the template's
    walk, its regular-expression matches and its brace escapes are done here once, not per event.
    """

    __slots__ = ("names", "render")

    def __init__(self, render: Callable[[Mapping[str, Any]], Any], names: frozenset[str]) -> None:
        self.render = render
        self.names = names


def compile_template(template: Any) -> _Template:
    """Compile an output template (see :func:`render_template`, which it gives the same results as)."""
    if isinstance(template, str):
        match = _PLACEHOLDER_RE.fullmatch(template)
        if match and match.group(1) is not None:
            name = match.group(1)
            return _Template(lambda values: values.get(name, template), frozenset([name]))
        parts: list[str | tuple[str, str]] = []  # literal text, or (placeholder name, its text as written)
        pos = 0
        for m in _PLACEHOLDER_RE.finditer(template):
            if m.start() > pos:
                parts.append(template[pos : m.start()])
            whole = m.group(0)
            parts.append("{" if whole == "{{" else "}" if whole == "}}" else (m.group(1), whole))
            pos = m.end()
        if pos < len(template):
            parts.append(template[pos:])
        names = frozenset(p[0] for p in parts if isinstance(p, tuple))
        if not names:
            constant = "".join(p for p in parts if isinstance(p, str)) if parts else template
            return _Template(lambda values: constant, names)

        def render_text(values: Mapping[str, Any]) -> str:
            return "".join(
                p if isinstance(p, str) else (_text(values[p[0]]) if p[0] in values else p[1]) for p in parts
            )

        return _Template(render_text, names)
    if isinstance(template, Mapping):
        items = [(str(k), compile_template(v)) for k, v in template.items()]
        renders = [(k, t.render) for k, t in items]
        return _Template(
            lambda values: {k: render(values) for k, render in renders},
            frozenset().union(*(t.names for _, t in items)),
        )
    if isinstance(template, list | tuple):
        compiled = [compile_template(v) for v in template]
        renders_ = [t.render for t in compiled]
        return _Template(
            lambda values: [render(values) for render in renders_],
            frozenset().union(*(t.names for t in compiled)),
        )
    return _Template(lambda values: template, frozenset())


# --------------------------------------------------------------------------------------------- loading


def _check_template(template: Any, where: str) -> None:
    if isinstance(template, str):
        for m in _TOKEN_RE.finditer(template):
            token = m.group(0)
            if token in ("{{", "}}"):
                continue
            if token in ("{", "}"):
                raise RulesError(
                    f"{where}: unbalanced {token!r} in {template!r}; write {token * 2} for a literal brace"
                )
            if m.group(1) not in PLACEHOLDERS:
                raise RulesError(
                    f"{where}: unknown placeholder {token}; use one of "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                    + " (write {{ and }} for literal braces)"
                )
        return
    if isinstance(template, Mapping):
        for k, v in template.items():
            if not isinstance(k, str):
                raise RulesError(f"{where}: output keys must be strings, got {k!r}")
            _check_template(v, f"{where}.{k}")
        return
    if isinstance(template, list):
        for i, v in enumerate(template):
            _check_template(v, f"{where}[{i}]")
        return
    if isinstance(template, bool) or template is None or isinstance(template, int):
        return
    if isinstance(template, float):
        if not math.isfinite(template):
            raise RulesError(f"{where}: numbers in an output must be finite, got {template}")
        return
    raise RulesError(f"{where}: an output may hold only JSON values, got {type(template).__name__}")


def _string_set(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise RulesError(f"{where}: expected a string or a non-empty list of strings, got {value!r}")


#: Scientific notation that YAML 1.1 (PyYAML) reads as a string: no dot in the mantissa (1e-9, 6e2) or no
#: sign in the exponent (1.5e3). Such a string is taken as the number it spells.
_SCIENTIFIC = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesError(f"{where}: expected a number, got {value!r}")
    if not low <= value <= high:
        raise RulesError(f"{where}: must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _unknown_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")


def _parse_seen(value: Any, where: str) -> tuple[SeenCondition, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]" if isinstance(value, list) else where
        if not isinstance(item, Mapping):
            raise RulesError(f"{w}: expected a mapping with label, at_least, within_seconds, got {item!r}")
        _unknown_keys(item, {"label", "at_least", "within_seconds", "model"}, w)
        for key in ("label", "at_least", "within_seconds"):
            if key not in item:
                raise RulesError(f"{w}: missing '{key}'")
        if not isinstance(item["label"], str):
            raise RulesError(f"{w}.label: expected a string, got {item['label']!r}")
        if "model" in item and not isinstance(item["model"], str):
            raise RulesError(f"{w}.model: expected a string, got {item['model']!r}")
        at_least = item["at_least"]
        if isinstance(at_least, bool) or not isinstance(at_least, int) or not 1 <= at_least <= 1_000_000:
            raise RulesError(f"{w}.at_least: expected a whole number from 1 to 1000000, got {at_least!r}")
        window = _number(item["within_seconds"], f"{w}.within_seconds", 0, _MAX_WINDOW_SECONDS)
        if window <= 0:
            raise RulesError(f"{w}.within_seconds: must be > 0, got {item['within_seconds']!r}")
        out.append(SeenCondition(item["label"], at_least, window, item.get("model")))
    return tuple(out)


def parse_rules(data: Any, source: str = "<rules>") -> RuleSet:
    """Validate parsed YAML/JSON rules data and build a :class:`RuleSet`.

    Raises:
        RulesError: with the location (``rules[2].when.min_probability``) and what to fix.
    """
    if data is None:
        raise RulesError(f"{source}: the rules file is empty; it needs at least 'rules: []'")
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: the top level must be a mapping with 'rules' (and optional 'default')")
    _unknown_keys(data, {"version", "rules", "default"}, source)
    if data.get("version", 1) != 1:
        raise RulesError(f"{source}: version must be 1, got {data.get('version')!r}")
    default = data.get("default", _DEFAULT_OUTPUT)
    _check_template(default, f"{source}: default")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list):
        raise RulesError(f"{source}: 'rules' must be a list of rules, got {raw_rules!r}")
    rules: list[Rule] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_rules):
        where = f"{source}: rules[{i}]"
        if not isinstance(raw, Mapping):
            raise RulesError(f"{where}: each rule must be a mapping with name, when, output")
        _unknown_keys(raw, {"name", "when", "output"}, where)
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise RulesError(f"{where}.name: a rule needs a name (1-128 characters), got {name!r}")
        where = f"{source}: rules[{i}] ({name})"
        if name in names:
            raise RulesError(f"{where}: duplicate rule name {name!r}; names must be unique")
        names.add(name)
        if "output" not in raw:
            raise RulesError(f"{where}: missing 'output'")
        _check_template(raw["output"], f"{where}.output")
        when = raw.get("when") or {}
        if not isinstance(when, Mapping):
            raise RulesError(f"{where}.when: expected a mapping of conditions, got {when!r}")
        _unknown_keys(when, {"context", "model", "label", "min_probability", "seen"}, f"{where}.when")
        model = when.get("model")
        if model is not None and not isinstance(model, str):
            raise RulesError(f"{where}.when.model: expected a stage's model name, got {model!r}")
        rules.append(
            Rule(
                name=name,
                output=raw["output"],
                contexts=_string_set(when["context"], f"{where}.when.context") if "context" in when else None,
                model=model,
                labels=_string_set(when["label"], f"{where}.when.label") if "label" in when else None,
                min_probability=(
                    _number(when["min_probability"], f"{where}.when.min_probability", 0, 1)
                    if "min_probability" in when
                    else None
                ),
                seen=_parse_seen(when["seen"], f"{where}.when.seen") if "seen" in when else (),
            )
        )
    return RuleSet(tuple(rules), default, source)


class _NoAliasLoader(UniqueKeyLoader):
    """Safe YAML (no Python objects) without aliases, so a small file cannot expand to gigabytes, and
    without a key given twice in one mapping (YAML would keep the last one silently)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not allowed in rules files")
        return super().compose_node(parent, index)


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a YAML rules file.

    Raises:
        RulesError: the file is missing, is not YAML (nested too deeply, a value YAML cannot read
            included), or breaks the schema (message says where and why).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RulesError(f"rules file {path} does not exist; pass an existing YAML file to --rules") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"cannot read rules file {path}: {exc}") from exc
    if len(text) > 1_000_000:
        raise RulesError(f"rules file {path} is larger than 1 MB; split or simplify it")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except DuplicateKeyError as exc:
        raise RulesError(f"rules file {path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"rules file {path} is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise RulesError(
            f"rules file {path} nests lists or mappings too deeply for the YAML reader; flatten it"
        ) from exc
    except (ValueError, TypeError) as exc:  # e.g. a date that does not exist: 2024-13-45
        raise RulesError(
            f"rules file {path} holds a value YAML cannot read ({exc.__class__.__name__}: {exc}); "
            "quote it if it is meant as text"
        ) from exc
    return parse_rules(data, str(path))


class RulesHolder:
    """The current rule set, swapped atomically on reload; a broken file keeps the old rules.

    Attributes:
        rules: The rule set in use (read it once per event; reloads replace it as a whole).
        last_error: The message of the last failed reload, or None after a good one.
        reloads: Number of successful reloads; ``failures``: number of failed ones.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self.rules: RuleSet = load_rules(self.path) if self.path is not None else RuleSet()
        self._stamp = self._file_stamp()
        self.last_error: str | None = None
        self.reloads = 0
        self.failures = 0

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> bool:
        """Load the file again; on success swap the rules in and return True, else keep the old ones."""
        if self.path is None:
            return False
        with self._lock:
            stamp = self._file_stamp()
            try:
                new = load_rules(self.path)
            except Exception as exc:  # a RulesError, or a bug: either way the old rules stay in use
                self.last_error = (
                    str(exc) if isinstance(exc, RulesError) else f"{exc.__class__.__name__}: {exc}"
                )
                self.failures += 1
                self._stamp = stamp
                return False
            self.rules = new
            self._stamp = stamp
            self.last_error = None
            self.reloads += 1
            return True

    def changed(self) -> bool:
        """Whether the file's mtime/size/inode differ from the last load attempt."""
        return self.path is not None and self._file_stamp() != self._stamp
