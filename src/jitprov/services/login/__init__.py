"""Sign-in through a connection: one flow, its steps, and one adapter per connection kind.

- :mod:`.kinds`: the connection-kind registry (configuration check, dev-only rule, how a login
  starts) and the start of every login (usable connection, state, browser binding);
- :mod:`.state`: the login request a callback answers (single use, bound to its browser);
- :mod:`.flow`: ``provision_on_login``, where every protocol ends, and ``dry_run_login``;
- :mod:`.steps`: what the flow does in its transaction (decide, announce, audit);
- :mod:`.failures`: ``login.failed`` for what fails before a decision;
- :mod:`.oidc`, :mod:`.saml`, :mod:`.demo`: the protocol adapters.
"""
