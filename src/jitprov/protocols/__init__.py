"""Wire formats <-> core. Adapters verify everything and end in one ExternalIdentity; they
never touch the database."""
