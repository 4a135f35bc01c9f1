"""Extensions of the transactions service."""
from nameko.extensions import Extension

from shared.config import validator_names
from shared.votes import PublicKeyFiles


class ValidatorPool(Extension):
    """The configured validator pool and the public keys that verify its votes, loaded at
    setup and read again when a validator's public key file changes (a rotation).

    Only public keys: this service can check a vote but not make one."""

    def setup(self):
        config = self.container.config
        self.names = tuple(validator_names(config))
        try:
            self.keys = PublicKeyFiles(config, self.names)
        except FileNotFoundError as error:
            raise RuntimeError("{} (run `paysys keys`)".format(error)) from None
