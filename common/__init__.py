"""lanon.common: codecs, keys, configuration and the pieces members and gateways share."""

__version__ = "0.1.0"
