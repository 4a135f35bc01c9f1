"""Settings of one identity's processes alone: ``PAYSYS_FOR_<IDENTITY>__<NAME>`` in the
environment of `paysys up` replaces ``PAYSYS_<NAME>`` in every process of that identity
(its replicas included), and in no other. ``PAYSYS_FOR_VALIDATOR_1__AMQP_URI`` points
validator_1 at another RabbitMQ address, say: the chaos experiment that cuts one
validator's network to RabbitMQ (through the harness's TCP proxy) does just that.

Read by the process as it starts, before config.yml is: every setting can be overridden,
and the override is checked by the same settings models as the setting itself.
"""
import os

PREFIX = "PAYSYS_FOR_"
SEPARATOR = "__"


def variable(identity, name):
    """The variable that overrides ``PAYSYS_<name>`` for ``identity``'s processes:
    ``variable("validator_1", "AMQP_URI")`` is ``PAYSYS_FOR_VALIDATOR_1__AMQP_URI``."""
    return "{}{}{}{}".format(PREFIX, identity.upper(), SEPARATOR, name)


def overrides(identity, environ):
    """``{PAYSYS_<NAME>: value}`` that ``environ`` sets for ``identity``'s processes."""
    prefix = "{}{}{}".format(PREFIX, identity.upper(), SEPARATOR)
    return {"PAYSYS_" + name[len(prefix):]: value for name, value in environ.items()
            if name.startswith(prefix) and len(name) > len(prefix)}


def apply(identity, environ=os.environ):
    """Put ``identity``'s overrides in place in ``environ``; what was overridden."""
    found = overrides(identity, environ)
    environ.update(found)
    return sorted(found)
