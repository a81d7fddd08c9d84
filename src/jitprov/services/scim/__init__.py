"""The SCIM 2.0 service provider's use cases (RFC 7644), on the accounts JIT login writes.

- :mod:`.users`, :mod:`.groups`: one unit of work per request, audit and outbox events in it;
- :mod:`.bulk`: SCIM Bulk, each operation through the same use cases;
- :mod:`.dispatch`: the typed table of each resource type's use cases (routes and Bulk);
- :mod:`.common`: what users and groups share (retry, ``If-Match``, paging, error translation);
- :mod:`.tokens`: client bearer tokens and the tenant's SCIM policy;
"""
