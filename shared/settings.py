"""Typed settings: each part of config.yml as a pydantic model, checked when a process starts.

config.yml stays the one file of settings and the one place of each variable's name and
default (``key: ${PAYSYS_SOMETHING:default}``). A model says what its keys are: their type,
their bounds and their meaning (the ``setting(...)`` description, which
docs/configuration.md is generated from). A section's model accepts no key it does not
declare, so a misspelt key is an error rather than a setting silently left at nothing.

    class TransactionsSection(Section):
        vote_deadline_ms: PositiveInt = setting("A validator that has not voted by then ...")

    class TransactionsSettings(ServiceSettings):   # a service's model: its sections
        transactions: TransactionsSection

A process reads its settings once (``settings_of(container, Model)``); a bad value stops it
with ``SettingsError``, which names the variable, the value and what is wrong.
"""
import os
from typing import Annotated

import yaml
from nameko.extensions import DependencyProvider
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared.config import ENV_REFERENCE, config_path


class Section(BaseModel):
    """One section of config.yml: every key declared, no other accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSettings(BaseModel):
    """A model of several sections of config.yml (its fields are the section names); it
    reads only those, and ignores the sections of others."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @property
    def own_max_workers(self):
        """The process's own worker pool size, when its section sets one (else None: the
        shared ``max_workers``)."""
        return None


def setting(meaning, secret=False, **bounds):
    """A key of a section: its meaning (one line, for docs/configuration.md) and bounds
    (pydantic's ``gt``, ``ge``, ``le``…). ``secret``: ``paysys config`` masks its value.
    No default: config.yml holds it."""
    extra = {"secret": True} if secret else None
    return Field(description=meaning, json_schema_extra=extra, **bounds)


def _comma_separated(value):
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)):
        return tuple(str(part).strip() for part in value if str(part).strip())
    return value


# The types settings take, with the bounds a bad value would hurt without.
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_separated)]


class SettingsError(ValueError):
    """config.yml (or the environment) gives a value a process cannot start with. Its
    message names each bad variable, its value and what is wrong, one a line."""


def env_references(path=None):
    """``{(section, key): [(VARIABLE, default), …]}`` of config.yml as written (before the
    environment is substituted): which variable each key reads, and its default."""
    with open(path or config_path(), encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    found = {}

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, where + (str(key),))
        elif isinstance(node, str):
            references = [(m.group("name"), m.group("default") or "")
                          for m in ENV_REFERENCE.finditer(node)]
            if references:
                found[where] = references

    walk(raw, ())
    return found


def load(model, config, references=None):
    """``model`` validated from ``config`` (config.yml as a dict, environment substituted);
    ``SettingsError`` naming every bad value."""
    try:
        return model.model_validate(config)
    except ValidationError as error:
        raise SettingsError(describe(error, config, model, references)) from None


def describe(error, config, model, references=None):
    """One line per problem: the variable (or config.yml key), the value, what is wrong."""
    if references is None:
        try:
            references = env_references()
        except OSError:
            references = {}
    lines = ["The configuration has {} bad value{} ({}):".format(
        error.error_count(), "" if error.error_count() == 1 else "s", model.__name__)]
    for problem in error.errors(include_url=False):
        where = tuple(str(part) for part in problem["loc"])
        key = ".".join(where)
        variables = [name for name, _ in references.get(where, ())]
        if problem["type"] == "extra_forbidden":
            lines.append("  {} in config.yml: no such setting (misspelt, or not declared in "
                         "{})".format(key, model.__name__))
            continue
        if problem["type"] == "missing":
            lines.append("  {} is missing from config.yml".format(key))
            continue
        if isinstance(problem.get("input"), dict):
            # A rule across keys (a model validator): its message names them.
            lines.append("  {}: {}".format(key or model.__name__,
                                           problem["msg"].replace("Value error, ", "")))
        elif variables and any(name in os.environ for name in variables):
            shown = ", ".join("{}={!r}".format(name, os.environ[name])
                              for name in variables if name in os.environ)
            lines.append("  {} ({}): {}".format(shown, key, problem["msg"]))
        elif variables:
            lines.append("  {} ({}, its default in config.yml) = {!r}: {}".format(
                ", ".join(variables), key, problem.get("input"), problem["msg"]))
        else:
            lines.append("  {} in config.yml = {!r}: {}".format(
                key, problem.get("input"), problem["msg"]))
    return "\n".join(lines)


def load_all(models, config, references=None):
    """``{name: settings}`` of every model of ``models`` (``{name: model}``); one
    ``SettingsError`` that lists the bad values of them all."""
    loaded, problems = {}, []
    for name, model in models.items():
        try:
            loaded[name] = load(model, config, references)
        except SettingsError as error:
            problems.append(str(error))
    if problems:
        raise SettingsError("\n".join(problems))
    return loaded


def settings_of(container, model):
    """``model`` read from ``container``'s config. Read when an extension is set up (a
    fraction of a millisecond), so not kept: the config is the one source."""
    return load(model, container.config)


class Settings(DependencyProvider):
    """Gives workers ``model`` read from the service's config (checked at setup)."""

    def __init__(self, model):
        self.model = model
        self.settings = None

    def setup(self):
        self.settings = settings_of(self.container, self.model)

    def get_dependency(self, worker_ctx):
        return self.settings
