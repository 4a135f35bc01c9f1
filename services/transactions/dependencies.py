"""Extensions of the transactions service."""
from nameko.extensions import Extension

from shared.settings import settings_of
from shared.shared_settings import SharedSettings
from shared.votes import key_file, load_validator_key


class ValidatorPool(Extension):
    """The configured validator pool and each validator's vote-verifying key, loaded once."""

    def setup(self):
        config = self.container.config
        self.names = tuple(settings_of(self.container, SharedSettings).validators.names)
        missing = [str(key_file(config, name)) for name in self.names
                   if not key_file(config, name).exists()]
        if missing:
            raise RuntimeError("validator keys missing: {} (run `paysys keys`)".format(
                ", ".join(missing)))
        self.keys = {name: load_validator_key(config, name) for name in self.names}
