"""jitprov: Just-in-Time user provisioning between identity providers and applications."""

__version__ = "0.1.0"
