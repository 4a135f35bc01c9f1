"""The payments service's settings."""
from shared.settings import PositiveInt, Section, ServiceSettings, setting


class PaymentsSection(Section):
    hold_time_s: PositiveInt = setting(
        "An authorization not captured within this long is voided by the system")


class PaymentsSettings(ServiceSettings):
    payments: PaymentsSection
