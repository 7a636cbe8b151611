"""The pipeline's stage registry, and the pipeline config validated against it.

A stage is declared once, as a :class:`Stage`: its name (also the name of its YAML section), how its
command config is built from the pipeline config, its run function, the files that mark it done, what
it contributes to ``results.json``, its report tables and its bars in ``summary.png``. The runner
(:mod:`stepjudge.pipeline.run`) and the report (:mod:`stepjudge.pipeline.report`) only walk the
registry, so a new method's stage (LaSeR, Critique-RL) plugs in with one ``@register_stage(...)``.

:data:`STAGE_REGISTRY` holds the built-in stages (registered when :mod:`stepjudge.pipeline` is
imported). Code that wants other stages without touching it works on a copy
(``STAGE_REGISTRY.copy()``) and passes that copy explicitly (``Pipeline(cfg, registry=...)``,
``write_report(..., registry=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from stepjudge.engines.factory import EngineConfig

__all__ = ["Table", "Stage", "StageContext", "StageRegistry", "STAGE_REGISTRY", "register_stage",
           "PipelineConfig"]

Table = tuple[str, list[str], list[list[str]], list[str]]
"""One report section: (title, header, rows, images as paths relative to the run folder)."""

Panels = dict[str, dict[str, float]]
"""Bars of the summary plot: {panel title: {bar label: value}}."""


@dataclass(frozen=True)
class StageContext:
    """What a stage's run function gets: the validated config, the run folder and the runner's state."""

    config: PipelineConfig
    out: Path
    progress: bool = True
    state: Mapping[str, Any] = field(default_factory=dict)  # pipeline.json as of this call

    @property
    def registry(self) -> StageRegistry:
        return self.config.registry


@dataclass(frozen=True)
class Stage:
    """Everything the pipeline knows about one stage, in one place.

    ``done`` lists files (relative to the run folder) whose existence means the stage finished; a stage
    without any is run on every call (the report). ``section_help`` is the description of the YAML
    section named like the stage (None: the stage reads none), ``section_default`` its default, and
    ``options`` a pydantic model of extra top-level keys the stage owns. ``build`` builds (and so
    validates) the stage's command config(s) from the pipeline config when the YAML is loaded.
    ``decides_results`` marks sections that may not change under a finished run folder. ``results``
    reads the stage's outputs into ``results.json`` entries, ``tables`` turns those entries into report
    sections and ``headline`` into summary-plot panels. ``runs_last`` keeps a stage after every stage
    registered later (the report). An ``optional`` stage is off unless its YAML section is given (or
    it is named in ``stages``): it is left out of the default ``stages`` and, when off, has no section
    (:meth:`PipelineConfig.has_section` is False), so other stages can ask whether it is part of the run.
    """

    name: str
    run: Callable[[StageContext], None]
    done: tuple[str, ...] = ()
    build: Callable[[PipelineConfig, Path], Any] | None = None
    section_help: str | None = None
    section_default: Callable[[], dict[str, Any]] = dict
    options: type[BaseModel] | None = None
    decides_results: bool = False
    results: Callable[[Path], dict[str, Any]] | None = None
    tables: Callable[[Mapping[str, Any], Path], list[Table]] | None = None
    headline: Callable[[Mapping[str, Any]], Panels] | None = None
    runs_last: bool = False
    optional: bool = False

    def is_done(self, out: Path) -> bool:
        return bool(self.done) and all((Path(out) / p).exists() for p in self.done)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(self.options.model_fields) if self.options is not None else ()


class StageRegistry:
    """Stages in run order; also the order of results.json entries, report sections and plot panels."""

    def __init__(self, stages: StageRegistry | tuple[Stage, ...] = ()):
        self._stages: dict[str, Stage] = {}
        for stage in stages:
            self.add(stage)

    def add(self, stage: Stage, before: str | None = None) -> Stage:
        """Insert ``stage`` before ``before`` (default: after every stage but those that run last)."""
        taken = set(PipelineConfig.model_fields) | set(self._stages) | {o for s in self for o in s.option_names}
        if stage.name in self._stages:
            raise ValueError(f"pipeline stage {stage.name!r} is already registered")
        clash = ({stage.name} | set(stage.option_names)) & taken
        if not stage.name.isidentifier() or clash:
            raise ValueError(f"pipeline stage {stage.name!r}: name or option {sorted(clash)} clashes with a "
                             "pipeline setting or is not an identifier")
        names = list(self._stages)
        if before is not None:
            if before not in self._stages:
                raise ValueError(f"no pipeline stage {before!r} to insert {stage.name!r} before")
            at = names.index(before)
        else:
            last = [i for i, s in enumerate(self._stages.values()) if s.runs_last]
            at = last[0] if last and not stage.runs_last else len(names)
        items = list(self._stages.items())
        items.insert(at, (stage.name, stage))
        self._stages = dict(items)
        return stage

    def register(self, name: str, *, before: str | None = None,
                 **declaration: Any) -> Callable[[Callable[[StageContext], None]], Callable[[StageContext], None]]:
        """Decorator form of :meth:`add`: the decorated function is the stage's run function."""

        def decorate(run: Callable[[StageContext], None]) -> Callable[[StageContext], None]:
            self.add(Stage(name=name, run=run, **declaration), before=before)
            return run

        return decorate

    def remove(self, name: str) -> Stage:
        return self._stages.pop(name)

    def copy(self) -> StageRegistry:
        return StageRegistry(self)

    def names(self) -> tuple[str, ...]:
        return tuple(self._stages)

    def __getitem__(self, name: str) -> Stage:
        return self._stages[name]

    def __contains__(self, name: object) -> bool:
        return name in self._stages

    def __iter__(self) -> Iterator[Stage]:
        return iter(tuple(self._stages.values()))

    def __len__(self) -> int:
        return len(self._stages)


STAGE_REGISTRY = StageRegistry()
"""The built-in stages; :mod:`stepjudge.pipeline` registers StepWiser's stages and the report here."""

register_stage = STAGE_REGISTRY.register


class PipelineConfig(BaseModel):
    """One YAML for the loop: shared settings, ``stages``, and one section per registered stage.

    Stage sections (and stage-owned top-level options) are checked against the registry given in the
    validation context (``PipelineConfig.model_validate(data, context={"registry": reg})``), else
    :data:`STAGE_REGISTRY`; an unknown key or stage name fails at load time, as does a section key
    the stage's command does not know.
    """

    model_config = ConfigDict(extra="allow")

    out: str = Field("runs/pipeline", description="one run folder for every stage and the report")
    policy: str = Field("smollm2-135m", description="the model that solves problems (annotate, solve, rerank)")
    judge_base: str | None = Field(None, description="model the judge is trained from (default: policy)")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="shared engine settings")
    stages: list[str] = Field(default_factory=list, description="stages to run, in order (default: all "
                                                                "registered stages)")
    _registry: StageRegistry = PrivateAttr(default_factory=lambda: STAGE_REGISTRY)

    @model_validator(mode="before")
    @classmethod
    def _stage_sections(cls, data: Any, info: ValidationInfo) -> Any:
        """Order the input as fields, then each stage's section and options, filling section defaults."""
        if not isinstance(data, Mapping):
            return data
        registry = _registry_of(info)
        data = dict(data)
        shaped = {k: data.pop(k) for k in list(data) if k in cls.model_fields}
        named = shaped.get("stages")
        named = named if isinstance(named, list) else []
        # an optional stage is on when its section is given or it is named in `stages`
        on = {s.name for s in registry if not s.optional or s.name in data or s.name in named}
        shaped.setdefault("stages", [n for n in registry.names() if n in on])
        for stage in registry:
            if stage.section_help is not None and stage.name in on:
                section = data.pop(stage.name, None)
                section = stage.section_default() if section is None else section
                if not isinstance(section, Mapping):
                    raise ValueError(f"{stage.name}: a mapping of `{stage.name}` options expected, "
                                     f"got {type(section).__name__}")
                shaped[stage.name] = dict(section)
            if stage.options is not None:
                given = {k: data.pop(k) for k in stage.option_names if k in data}
                shaped.update(stage.options.model_validate(given).model_dump())
        if data:
            raise ValueError(f"unknown pipeline keys {sorted(data)} (settings: {sorted(cls.model_fields)}; "
                             f"stage sections and options: {sorted(_stage_keys(registry))})")
        return shaped

    @model_validator(mode="after")
    def _stages_known_and_sections_valid(self, info: ValidationInfo) -> PipelineConfig:
        registry = _registry_of(info)
        self._registry = registry
        unknown = [s for s in self.stages if s not in registry]
        if unknown:
            raise ValueError(f"unknown stages {unknown} (registered: {list(registry.names())})")
        for name in self.stages:
            build = registry[name].build
            if build is not None:
                try:
                    build(self, Path(self.out))
                except ValidationError as e:  # name the key inside its section: `annotate.rollouts`
                    problems = "; ".join(f"{'.'.join(map(str, (name, *err['loc'])))}: {err['msg']}"
                                         for err in e.errors())
                    raise ValueError(f"in the `{name}` section: {problems}") from None
        return self

    @property
    def registry(self) -> StageRegistry:
        """The registry this config was validated against (the one the pipeline runs)."""
        return self._registry

    def section(self, stage: str) -> dict[str, Any]:
        """A stage's YAML section (its command's options as written)."""
        return (self.model_extra or {})[stage]

    def has_section(self, stage: str) -> bool:
        """Whether ``stage``'s section is part of this config (False for an optional stage that is off)."""
        return stage in (self.model_extra or {})

    def option(self, name: str) -> Any:
        """A stage-owned top-level option (e.g. chunk_reset's ``calibrated_threshold``)."""
        return (self.model_extra or {})[name]


def _registry_of(info: ValidationInfo) -> StageRegistry:
    registry = (info.context or {}).get("registry")
    return registry if registry is not None else STAGE_REGISTRY


def _stage_keys(registry: StageRegistry) -> list[str]:
    return [k for s in registry for k in ((s.name,) if s.section_help is not None else ()) + s.option_names]
