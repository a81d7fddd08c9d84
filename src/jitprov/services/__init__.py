"""Use cases, one transaction each. Called alike by the web layer and the CLI."""
