"""Dependency providers of the auth service."""
from nameko.extensions import DependencyProvider

from services.auth import login_brake, refresh_tokens
from services.auth.users import ordered_roles
from services.auth.settings import AuthSettings
from shared.settings import load, settings_of
from shared.tokens import issue_access_token, load_private_key, private_key_file

TOKEN_TYPE = "Bearer"


class Issuer:
    """Issues token pairs: an access token signed with the private key, and a refresh token
    recorded in the caller's transaction (so it exists only if that transaction commits)."""

    def __init__(self, private_key, access_token_ttl_s, refresh_token_ttl_s):
        self.private_key = private_key
        self.access_token_ttl_s = int(access_token_ttl_s)
        self.refresh_token_ttl_s = int(refresh_token_ttl_s)

    @classmethod
    def from_config(cls, config):
        """From ``config`` (config.yml as a dict), read through the auth settings model."""
        auth = load(AuthSettings, config).auth
        try:
            private_key = load_private_key(config)
        except FileNotFoundError:
            raise RuntimeError(
                "auth: no token signing key at {}; `paysys up` creates the key pair "
                "(shared.tokens.ensure_keypair)".format(private_key_file(config))) from None
        return cls(private_key, auth.access_token_ttl_s, auth.refresh_token_ttl_s)

    def issue_pair(self, connection, user, family_id=None):
        """Tokens for ``user`` (a users row, read in this transaction so its roles are current).
        Without ``family_id`` a new family starts: that is a login."""
        if family_id is None:
            family_id = refresh_tokens.start_family(connection, user.id, self.refresh_token_ttl_s)
        return {
            "access_token": issue_access_token(
                self.private_key, user.id, ordered_roles(user.roles), self.access_token_ttl_s),
            "refresh_token": refresh_tokens.add_token(connection, family_id),
            "token_type": TOKEN_TYPE,
            "expires_in": self.access_token_ttl_s,
        }


class TokenIssuer(DependencyProvider):
    """Gives workers the ``Issuer``. The key is read once, at setup: a service that could not
    sign would fail every login, so a missing key stops it from starting instead."""

    issuer = None

    def setup(self):
        self.issuer = Issuer.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.issuer


class LoginBrake(DependencyProvider):
    """The login brake's settings (``auth.login_…``), checked at setup: a value that cannot
    work stops the service from starting."""

    def setup(self):
        self.settings = login_brake.Settings.from_settings(
            settings_of(self.container, AuthSettings).auth)

    def get_dependency(self, worker_ctx):
        return self.settings
