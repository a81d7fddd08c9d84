"""Configuration as code: ``jitprov export`` writes the tenants, their policies, connections,
mappings, verified domains and webhook endpoints as one YAML file; ``jitprov apply`` makes
the database say what such a file says, through the services the CLI and the admin API
use, in one transaction.

``model`` is the file's schema, ``source`` reads and checks a file (no database),
``state`` reads the database in the file's terms and exports it, ``apply`` plans and
carries out the changes.
"""

from jitprov.services.config_file.apply import ApplyResult, Change, apply_config
from jitprov.services.config_file.model import ConfigFile, json_schema
from jitprov.services.config_file.source import (
    MAX_FILE_BYTES,
    ConfigFileError,
    ConfigSource,
    load_source,
    read_bounded,
)
from jitprov.services.config_file.state import export_config

__all__ = ["MAX_FILE_BYTES", "ApplyResult", "Change", "ConfigFile", "ConfigFileError",
           "ConfigSource", "apply_config", "export_config", "json_schema", "load_source",
           "read_bounded"]
