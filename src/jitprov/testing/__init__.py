"""Fakes and builders for tests and benchmarks, shipped so that ``bench/`` (and an app's own
tests) never import the test suite: a SAML IdP that signs in process (``saml_idp``), a
software WebAuthn authenticator (``authenticator``), and a tenant with a connection and a
mapping (``builders``).

Never imported by the server itself; it may use the services, the store and the protocols.
"""
