"""`paysys config`: the effective settings (secrets masked), and docs/configuration.md,
both made from the settings models (shared/settings.py) and config.yml."""
import sys
import typing
from urllib.parse import urlsplit, urlunsplit

import annotated_types
import yaml
from pydantic import BaseModel

from shared.catalog import settings_models
from shared.config import DEFAULT_CONFIG_PATH
from shared.pg_urls import is_multi_host, with_password_masked
from shared.settings import env_references

MASK = "***"
DOCS_PATH = "docs/configuration.md"


# --- walking a model ------------------------------------------------------------------------


def settings_fields(model):
    """``[(path, FieldInfo)]`` of every setting of ``model``, ``path`` being its place in
    config.yml: ``("gateway", "max_workers")``, or ``("AMQP_URI",)`` for a top-level key."""
    found = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if _is_section(field.annotation):
            found.extend(((key, sub_name), sub_field)
                         for sub_name, sub_field in field.annotation.model_fields.items())
        else:
            found.append(((key,), field))
    return found


def _is_section(annotation):
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_secret(field):
    return bool((field.json_schema_extra or {}).get("secret"))


def _value_at(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


# --- the effective configuration ------------------------------------------------------------


def mask(value, secret):
    """A password in a URL becomes ***; a secret that is not a URL is *** whole (an empty
    one stays empty: nothing is hidden by saying it is unset)."""
    if not isinstance(value, str) or not value:
        return value
    if ";" in value and "://" in value:  # kombu's failover list: each URL its own
        return ";".join(mask(part, secret) for part in value.split(";"))
    parts = urlsplit(value)
    if parts.scheme and parts.netloc and is_multi_host(value):
        return with_password_masked(value, MASK)  # .port cannot read "h1:p1,h2:p2"
    if parts.scheme and parts.netloc and parts.password:
        netloc = "{}:{}@{}".format(parts.username or "", MASK, parts.hostname or "")
        if parts.port:
            netloc += ":{}".format(parts.port)
        return urlunsplit(parts._replace(netloc=netloc))
    if secret and not (parts.scheme and parts.netloc):
        return MASK
    return value


def _shown(value):
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return str(value)


def effective(loaded):
    """``{model name: {config.yml path: value}}`` of loaded settings, secrets masked."""
    report = {}
    for name, settings in loaded.items():
        values = {}
        for path, field in settings_fields(type(settings)):
            value = settings
            for attribute in _attributes(type(settings), path):
                value = getattr(value, attribute)
            values[".".join(path)] = mask(_shown(value), _is_secret(field))
        report[name] = values
    return report


def _attributes(model, path):
    """Attribute names of ``path`` (config.yml keys; a top-level key may be an alias)."""
    names = []
    for key in path:
        for name, field in model.model_fields.items():
            if (field.alias or name) == key:
                names.append(name)
                model = field.annotation if _is_section(field.annotation) else model
                break
    return names


def as_yaml(report):
    nested = {}
    for name, values in report.items():
        tree = nested.setdefault(name, {})
        for path, value in values.items():
            node = tree
            *parents, last = path.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
    return yaml.safe_dump(nested, sort_keys=False, allow_unicode=True)


def as_table(report, references):
    rows = [("SETTINGS", "KEY", "VALUE", "VARIABLE")]
    for name, values in report.items():
        for path, value in values.items():
            variables = ", ".join(v for v, _ in references.get(tuple(path.split(".")), ()))
            rows.append((name, path, "" if value is None else str(value), variables))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("{:<{}}  {:<{}}  {:<{}}  {}".format(
        row[0], widths[0], row[1], widths[1], row[2], widths[2], row[3]).rstrip()
        for row in rows) + "\n"


# --- docs/configuration.md ------------------------------------------------------------------

HEADER = """# Configuration

<!-- Generated from the settings models and config.yml by `make config-docs`
     (`paysys config --docs`): edit those, not this file. A unit test fails when it is
     out of date. -->

Every process reads one file, `config.yml` (`PAYSYS_CONFIG` names another). A value
written `${PAYSYS_SOMETHING:default}` is read from that environment variable, else the
default after the colon; the tables below list every such variable. The environment is
the usual way to configure a deployment; editing config.yml is for what has no variable.

Each process checks its settings when it starts, against a typed model: the shared model
(`shared/shared_settings.py`) and its service's (`<service package>/settings.py`). A value
of the wrong type or out of bounds stops it, and `paysys up`, before anything runs, with
one line per bad value naming the variable, the value and what is wrong, e.g.

    gateway: not started. The configuration has 1 bad value (SharedSettings):
      PAYSYS_RPC_TIMEOUT_MS='-5' (rpc.timeout_ms): Input should be greater than 0

`paysys config` prints the effective configuration (all models, or one with
`--service NAME`; `--format table` for a table), with passwords in URLs and other secrets
masked.

Four variables are read from the environment alone, not through config.yml:

| Variable | Default | Meaning |
|---|---|---|
| `PAYSYS_CONFIG` | `config.yml` of the repository | The configuration file |
| `PAYSYS_SERVICE` | (empty) | The process `paysys serve` runs when it is given no name (the image sets it) |
| `PAYSYS_HEARTBEAT_FILE` | (empty: none; the image sets one) | Where `paysys serve` keeps the heartbeat that `paysys health` reads |
| `PAYSYS_FOR_` + `NAME__VARIABLE` | (none) | Replaces `PAYSYS_VARIABLE` in the processes of service or validator `NAME` alone, replicas included: `PAYSYS_FOR_VALIDATOR_1__AMQP_URI` (docs/operations.md, Replicas) |

Units are in the names: `_ms` milliseconds, `_s` seconds, `_minor` the currency's minor
units. A section is read by one service only (its model's), unless it is in the shared
model.

## Adding a setting

1. In config.yml, under the section of the service that reads it (or a shared section
   if several services do), one line: `key_with_unit: ${PAYSYS_SOMETHING:default}`. The
   default lives there and nowhere else.
2. In that section's model, one field: its type with its bounds, and its meaning
   (`key_with_unit: PositiveInt = setting("What it does")`). The code reads it as
   `settings.section.key_with_unit`; a value it needs in other units is a property of
   the section (`timeout_s` beside `timeout_ms`).
3. `make config-docs` rewrites this file.

A key in config.yml that no model declares stops the processes that read its section
(a misspelt key is an error, not a silently ignored setting), and the unit tests
(tests/unit/test_config.py) fail on a key without a field, a field without a key, or a
stale docs/configuration.md.
"""


BOUNDS = ((annotated_types.Gt, ">", "gt"), (annotated_types.Ge, ">=", "ge"),
          (annotated_types.Lt, "<", "lt"), (annotated_types.Le, "<=", "le"))


def type_of(field):
    """``int > 0``, ``float``, ``bool``, ``list (comma-separated)``, ``one of A, B``…"""
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(str(value) for value in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple or annotation is tuple:
        text = "list (comma-separated)"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    bounds = []
    for item in field.metadata:
        for kind, symbol, attribute in BOUNDS:
            if isinstance(item, kind):
                bounds.append("{} {}".format(symbol, getattr(item, attribute)))
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            bounds.append("not empty")
    if bounds:
        # Lower bounds first: "> 0, <= 99".
        text += " " + ", ".join(sorted(dict.fromkeys(bounds), key=lambda b: b[0] != ">"))
    return text


def _cell(text):
    return str(text).replace("|", "\\|")


def docs(config_path=DEFAULT_CONFIG_PATH):
    """docs/configuration.md: every setting of every model, as config.yml gives it."""
    references = env_references(config_path)
    with open(config_path, encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    parts = [HEADER]
    for name, model in settings_models().items():
        parts.append("\n## {} (`{}`)\n\n{}\n\n".format(
            "Shared" if name == "shared" else name, model.__module__.replace(".", "/") + ".py",
            (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ and
            name == "shared" else "Read by the {} service only.".format(name)))
        parts.append("| Variable | config.yml key | Type | Default | Meaning |\n"
                     "|---|---|---|---|---|\n")
        for path, field in settings_fields(model):
            found = references.get(path)
            if found:
                variables = ", ".join("`{}`".format(variable) for variable, _ in found)
                defaults = [default for _, default in found]
                default = defaults[0] if len(defaults) == 1 else _value_at(raw, path)
            else:
                variables = "—"
                default = _value_at(raw, path)
            default = "" if default is None else str(default)
            parts.append("| {} | `{}` | {} | {} | {} |\n".format(
                variables, ".".join(path), _cell(type_of(field)),
                "`{}`".format(_cell(default)) if default != "" else "(empty)",
                _cell(field.description or "")))
    return "".join(parts)


def main(args, config):
    """`paysys config`: 0, or 2 with the bad values named."""
    from shared.settings import SettingsError, load_all

    if args.docs:
        sys.stdout.write(docs())
        return 0
    models = settings_models()
    if args.service:
        if args.service not in models:
            print("paysys config: no settings named {!r} (one of: {})".format(
                args.service, ", ".join(models)), file=sys.stderr)
            return 2
        models = {args.service: models[args.service]}
    try:
        loaded = load_all(models, config)
    except SettingsError as error:
        print("paysys config: {}".format(error), file=sys.stderr)
        return 2
    report = effective(loaded)
    if args.format == "table":
        sys.stdout.write(as_table(report, env_references()))
    else:
        sys.stdout.write(as_yaml(report))
    return 0
