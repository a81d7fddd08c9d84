"""SCIM 2.0: System for Cross-domain Identity Management.

- RFC 7643, Core Schema: https://www.rfc-editor.org/rfc/rfc7643 (User and Group resources §4,
  the enterprise User extension §4.3, ServiceProviderConfig, ResourceType and Schema §5-7).
- RFC 7644, Protocol: https://www.rfc-editor.org/rfc/rfc7644 (create §3.3, query and filters
  §3.4.2, replace §3.5.1, PATCH §3.5.2, delete §3.6, bulk §3.7, errors §3.12, ETags §3.14).

Wire format only: this package never touches the database.
"""
