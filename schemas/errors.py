"""One exception hierarchy for the engine; each mixes in the stdlib type a caller would expect."""


class CryptoIntelError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(CryptoIntelError, ValueError):
    """A setting, flag or spec is invalid; the message says which and how to fix it."""


class InputError(CryptoIntelError, ValueError):
    """Input data (a file, a column, a row) cannot be used as given."""


class IndicatorSpecError(ConfigError):
    """An indicator spec such as ``rsi:14`` names an unknown indicator or bad parameters."""


class StateError(CryptoIntelError, RuntimeError):
    """A snapshot cannot be restored (wrong version or operator)."""
