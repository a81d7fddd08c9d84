"""The only package that imports SQLAlchemy. ORM rows never leave it: repositories return
core values or small frozen records."""
