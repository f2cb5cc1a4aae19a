"""The cascade file: a validated YAML description of a domain model, specialists per context and the API.

```yaml
name: field-guide
domain:
  model: models/domain.onnx        # paths are relative to this file
  threshold: 0.5                   # the top probability must be strictly above it
  continue_on: [plant, food]       # optional: domain labels that may go on to a specialist
specialists:                       # context -> specialist model (a dozen or more is fine)
  hiking:  {model: models/plants.onnx, threshold: 0.5, domain_labels: [plant]}
  kitchen: {model: models/food.onnx}
  default: {model: models/general.onnx}   # optional fallback for any other context
backend: auto                      # auto (default: each model's from its file) | onnx | litert | keras | coreml
api:                               # optional: where events go
  url: http://127.0.0.1:8000
  key_env: VISIONCASCADE_API_KEY
  min_interval_s: 1.0
  queue_size: 1000
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from visioncascade._yaml import DuplicateKeyError, UniqueKeyLoader
from visioncascade.errors import ConfigError

__all__ = ["ApiConfig", "CascadeConfig", "StageConfig", "load_cascade_config"]

DEFAULT_CONTEXT = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageConfig(_Strict):
    """One model of the cascade."""

    model: Path
    threshold: float = Field(
        0.5, gt=0.0, lt=1.0, strict=True, description="top probability must be strictly above"
    )
    backend: str | None = None
    domain_labels: list[str] | None = Field(
        None, description="specialists only: run only when the domain's top label is one of these"
    )
    continue_on: list[str] | None = Field(
        None, description="domain only: domain labels that may continue to a specialist"
    )

    @field_validator("model", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():  # Path("") is ".": the cascade file's own folder
            raise ValueError(
                "the model path is empty; give the model file or run folder, relative to this file"
            )
        return value


class ApiConfig(_Strict):
    """Where and how events are posted."""

    url: str
    key_env: str = "VISIONCASCADE_API_KEY"
    min_interval_s: float = Field(1.0, ge=0.0, strict=True)
    queue_size: int = Field(1000, ge=1, le=1_000_000, strict=True)
    timeout_s: float = Field(5.0, gt=0.0, strict=True)
    device_id: str | None = Field(None, min_length=1, max_length=128, description="the API takes 1-128 chars")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"api.url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    def api_key(self) -> str | None:
        """The key from the environment variable ``key_env`` (None when unset)."""
        return os.environ.get(self.key_env) or None


class CascadeConfig(_Strict):
    """A whole cascade file; paths are already resolved against the file's folder."""

    name: str = Field(min_length=1, max_length=200)
    domain: StageConfig
    specialists: dict[str, StageConfig] = Field(min_length=1)
    backend: str = Field(
        "auto",
        description="auto (each model's from its file: .onnx, .tflite, a run folder...) | onnx | litert...",
    )
    api: ApiConfig | None = None

    def specialist_for(self, context: str) -> tuple[str, StageConfig]:
        """The specialist routed for ``context`` (or the ``default`` one); unknown contexts fail clearly."""
        if context in self.specialists:
            return context, self.specialists[context]
        if DEFAULT_CONTEXT in self.specialists:
            return DEFAULT_CONTEXT, self.specialists[DEFAULT_CONTEXT]
        known = ", ".join(sorted(self.specialists))
        raise ConfigError(
            f"unknown context {context!r} in cascade {self.name!r}; known contexts: {known} "
            f"(add a '{DEFAULT_CONTEXT}' specialist to catch every other context)"
        )


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif isinstance(value, bool) and error["loc"][-1] == "[key]":  # YAML 1.1: on, off, yes, no...
            where = ".".join(str(p) for p in error["loc"][:-2]) or "(top level)"
            message = (
                f"a key was read as {str(value).lower()}: YAML reads on, off, yes, no, true and false unquoted "
                "as true or false; quote it (e.g. 'on': ...)"
            )
        elif isinstance(value, bool) and error["type"] in ("float_type", "int_type"):
            message = f"a number is needed, got {str(value).lower()}"
        lines.append(f"{where}: {message}")
    return f"invalid cascade file {path}:\n  " + "\n  ".join(lines)


def load_cascade_config(path: str | Path) -> CascadeConfig:
    """Read and validate a cascade YAML file: keys, thresholds, model files, backends and label names.

    Each stage's backend is its own ``backend``, else the file's, else ``auto``; ``auto`` becomes the backend
    the model's file calls for, and an explicit backend that cannot run the file is a problem reported here
    (not when a specialist's context first comes).

    Raises :class:`ConfigError` listing every problem found.
    """
    from visioncascade.runtime.predictors import BACKENDS, backend_of, find_spec

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cascade file {path} does not exist")
    try:
        raw: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise ConfigError(f"invalid cascade file {path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cascade file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"cascade file {path} must be a mapping with name, domain and specialists")
    try:
        config = CascadeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None

    base = path.parent
    problems: list[str] = []

    def resolve(stage: StageConfig, where: str) -> StageConfig:
        model = stage.model if stage.model.is_absolute() else (base / stage.model)
        if not model.exists():
            problems.append(f"{where}.model: {stage.model} does not exist (paths are relative to {base})")
        backend = stage.backend or config.backend
        setting = f"{where}.backend" if stage.backend else "backend"
        if backend not in BACKENDS:
            problems.append(f"{setting}: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        elif model.exists():
            kind = backend_of(model)
            what = (
                "a run folder"
                if model.is_dir() and kind == "keras"
                else f"a {model.suffix or 'suffix-less'} file"
            )
            if kind is None:
                if backend == "auto":
                    problems.append(
                        f"{where}.model: cannot tell the backend of {stage.model} ({what}): pass a .onnx, "
                        ".tflite, .keras, .mlpackage or .mlmodel file or a run folder, or set backend"
                    )
            elif backend == "auto":
                backend = kind
            elif backend != kind:
                problems.append(
                    f"{where}.model: {stage.model} is {what}, which the {kind} backend runs, but {setting} is "
                    f"{backend!r}; set {setting}: {kind}, or leave backend out to infer it from each model"
                )
        return stage.model_copy(update={"model": model.resolve(), "backend": backend})

    domain = resolve(config.domain, "domain")
    if config.domain.domain_labels is not None:
        problems.append("domain.domain_labels: only specialists take domain_labels; use continue_on")
    specialists = {}
    for context, stage in config.specialists.items():
        specialists[context] = resolve(stage, f"specialists.{context}")
        if stage.continue_on is not None:
            problems.append(f"specialists.{context}.continue_on: only the domain takes continue_on")
    if not problems:
        domain_labels = set(find_spec(domain.model).labels)
        for where, labels in [("domain.continue_on", domain.continue_on)] + [
            (f"specialists.{c}.domain_labels", s.domain_labels) for c, s in specialists.items()
        ]:
            unknown = sorted(set(labels or ()) - domain_labels)
            if unknown:
                problems.append(
                    f"{where}: {unknown} are not labels of the domain model (its labels: {sorted(domain_labels)})"
                )
        for context, stage in specialists.items():
            try:
                find_spec(stage.model)
            except ConfigError as exc:
                problems.append(f"specialists.{context}.model: {exc}")
    if problems:
        raise ConfigError(f"invalid cascade file {path}:\n  " + "\n  ".join(problems))
    return config.model_copy(update={"domain": domain, "specialists": specialists})
