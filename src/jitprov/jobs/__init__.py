"""Background work of ``serve``: purges, SAML metadata refresh, webhook delivery and
shared-device housekeeping. Each job is safe on every node."""
