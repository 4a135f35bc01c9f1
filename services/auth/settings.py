"""The auth service's settings: its signing key, token lifetimes and the login brake."""
from pathlib import Path

from pydantic import model_validator

from shared.settings import PositiveFloat, PositiveInt, Section, ServiceSettings, setting


class AuthSection(Section):
    private_key_file: str = setting(
        "Ed25519 private key that signs access tokens; empty: <run_dir>/keys/jwt-ed25519.pem")
    access_token_ttl_s: PositiveInt = setting("Lifetime of an access token")
    refresh_token_ttl_s: PositiveInt = setting("Lifetime of a refresh token's family")
    login_attempts_before_backoff: PositiveInt = setting(
        "Login attempts (per e-mail address and client IP) without a success before each "
        "further one must wait")
    login_backoff_base_s: PositiveFloat = setting(
        "First wait of the login brake; each further one doubles it")
    login_backoff_cap_s: PositiveFloat = setting("Longest wait of the login brake")
    login_forget_after_s: PositiveFloat = setting(
        "A pair without attempts this long starts afresh")

    @model_validator(mode="after")
    def _forget_after_the_longest_wait(self):
        # A pair forgotten while still blocked would get its free attempts back.
        if self.login_forget_after_s < self.login_backoff_cap_s:
            raise ValueError("auth.login_forget_after_s must be at least login_backoff_cap_s")
        return self

    def private_key_path(self, keys_path):
        return Path(self.private_key_file or Path(keys_path) / "jwt-ed25519.pem")


class AuthSettings(ServiceSettings):
    auth: AuthSection
