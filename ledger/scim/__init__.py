"""SCIM 2.0 (RFC 7643/7644): schema registry, filters and paths."""
