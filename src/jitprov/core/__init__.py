"""The pure core: identities, mapping rules and provisioning decisions. No I/O, no clock."""
