"""The ``jitprov`` command line. Calls services exactly like the API does."""
