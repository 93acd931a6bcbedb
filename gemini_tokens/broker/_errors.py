"""`InvalidSettingError`: a broker setting that breaks a rule, with the setting and the rule
as attributes, so that a service reading the settings from a file can name its own key."""

from __future__ import annotations

from gemini_tokens import ConfigurationError

__all__ = ["InvalidSettingError"]


class InvalidSettingError(ConfigurationError):
    """A setting of the broker (a `TokenBroker` or `JWTSettings` argument) breaks a rule.

    The message is ``<field>: <rule>``, as for every `ConfigurationError` of the broker.

    Args:
        field: The setting, e.g. ``rate_limits`` or ``algorithms``; ``jwt`` for a rule
            between several `JWTSettings` fields.
        rule: What it must be, in words (never a secret it was given).

    Attributes:
        field: The setting.
        rule: What it must be.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(field, rule)
        self.field = field
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}" if self.field else self.rule
