"""Auth RPCs: registration, login, refresh-token rotation, logout, user lookup, and the
audit trail of users made and roles granted at the command line (``audit_events``).

Every error is one of ``shared.errors`` so the gateway receives it typed. Password hashing
runs outside database transactions so no pooled connection waits on Argon2's CPU time.
"""
import logging

from nameko.timer import timer
from sqlalchemy.exc import IntegrityError

from services.auth import login_brake, passwords, refresh_tokens, users
from services.auth.dependencies import LoginBrake, TokenIssuer
from shared.audit import AuditRpcs
from shared.db import Database
from shared.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationFailed
from shared.leadership import one_replica_at_a_time
from shared.service import ServiceBase, rpc

log = logging.getLogger(__name__)
PURGE_INTERVAL_S = 600  # the login brake forgets quiet pairs this often


def _invalid_credentials():
    # One answer for an unknown address and a wrong password: neither is revealed.
    return Unauthorized("Email or password is wrong.", code="invalid_credentials")


class AuthService(AuditRpcs, ServiceBase):
    name = "auth"
    db = Database(schema="auth")
    tokens = TokenIssuer()
    brake = LoginBrake()

    @rpc
    def register(self, email, password, full_name):
        errors = users.registration_errors(email, password, full_name)
        if errors:
            raise ValidationFailed("The registration is not valid.", errors=errors)
        password_hash = passwords.hash_password(password)
        try:
            with self.db.transaction() as connection:
                user = users.insert_user(connection, email, password_hash, full_name)
        except IntegrityError as error:
            # The unique constraint decides, not an earlier SELECT: two concurrent
            # registrations of one address both pass any SELECT.
            if users.is_email_taken_error(error):
                # ``from None``: the chained database error would put the address in the log.
                raise Conflict("This email is already registered.", code="email_taken") from None
            raise
        return users.public_view(user)

    @rpc
    def login(self, email, password, client_ip=None):
        """A token pair. ``client_ip``: where the attempt comes from (the gateway's client
        address), which the login brake counts failures by, with the address."""
        if not isinstance(password, str):
            password = ""
        if not isinstance(email, str):
            email = None  # no user has it, and nothing to brake: answered as a wrong password
        with self.db.transaction() as connection:
            wait_s = None
            if email is not None:
                wait_s = login_brake.admit(connection, email, client_ip, self.brake)
            user = users.find_by_email(connection, email) if email is not None else None
        if wait_s is not None:
            raise RateLimited("Too many failed logins for this address from your network; "
                              "try again in {} s.".format(wait_s), retry_after_s=wait_s)
        if user is None:
            passwords.verify_against_dummy(password)
            raise _invalid_credentials()
        if not passwords.verify_password(user.password_hash, password):
            raise _invalid_credentials()
        new_hash = None
        if passwords.needs_rehash(user.password_hash):
            new_hash = passwords.hash_password(password)
        with self.db.transaction() as connection:
            login_brake.forget(connection, email, client_ip)
            if new_hash is not None:
                users.replace_password_hash(connection, user.id, user.password_hash, new_hash)
            return self.tokens.issue_pair(connection, user)

    @rpc
    def refresh(self, refresh_token):
        with self.db.transaction() as connection:
            spent = refresh_tokens.spend(connection, refresh_token)
            if spent is not None:
                # Roles as they are now: a role granted since the login shows up here.
                user = users.find_by_id(connection, spent.user_id)
                return self.tokens.issue_pair(connection, user, family_id=spent.family_id)
            reused = refresh_tokens.revoke_if_spent(connection, refresh_token)
        # Raised after the transaction has committed the revocation, not inside it.
        if reused is not None:
            log.warning("refresh token reused: family %s of user %s revoked",
                        reused.family_id, reused.user_id)
            raise Unauthorized("The refresh token was already used; log in again.",
                               code="refresh_token_reused")
        raise Unauthorized("The refresh token is not valid.", code="invalid_refresh_token")

    @rpc
    def logout(self, user_id, refresh_token):
        # Silent whatever the token is: the caller must learn nothing about other tokens.
        user_id = users.parse_user_id(user_id)
        if user_id is None:
            return None
        with self.db.transaction() as connection:
            refresh_tokens.revoke_for_user(connection, refresh_token, user_id)
        return None

    @timer(interval=PURGE_INTERVAL_S)
    @one_replica_at_a_time("auth.login_brake_purge")
    def forget_quiet_logins(self):
        """Deletes the login brake's counts of pairs quiet for ``login_forget_after_s``."""
        with self.db.transaction() as connection:
            return login_brake.purge(connection, self.brake)

    @rpc
    def get_user(self, user_id):
        with self.db.connection() as connection:
            user = users.find_by_id(connection, user_id)
        if user is None:
            raise NotFound("No such user.", code="not_found")
        return users.public_view(user)
