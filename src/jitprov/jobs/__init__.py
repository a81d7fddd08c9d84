"""Background work of ``serve``: purges, SAML metadata refresh, webhook delivery, the
re-evaluation of rule grants after a large SCIM change, and shared-device housekeeping. Each
job is safe on every node."""
