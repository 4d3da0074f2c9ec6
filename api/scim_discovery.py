"""SCIM discovery documents (RFC 7644 §4, RFC 7643 §5)."""
from __future__ import annotations

BULK_MAX_OPERATIONS = 1000
BULK_MAX_PAYLOAD = 1024 * 1024
FILTER_MAX_RESULTS = 1000


def service_provider_config(location: str) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": BULK_MAX_OPERATIONS, "maxPayloadSize": BULK_MAX_PAYLOAD},
        "filter": {"supported": True, "maxResults": FILTER_MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
            "description": "A long-lived bearer token bound to one tenant and the scope `scim`.",
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": location},
    }
