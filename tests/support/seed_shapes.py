"""What the seed APIs' clients accept: the timestamp form and Brevo's process names."""

from __future__ import annotations

import re

# The seed's form: RFC 3339 in UTC with `Z` (milliseconds when there are any).
SEED_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")
BREVO_NAMES = frozenset(
    {
        "IMPORTUSER",
        "SEARCH_EXPORT_USERS",
        "SEARCH_EXPORT_USERS_API",
        "CONTACT_EXPORT",
        "LIST_EXPORT",
        "CAMPAIGN_USER_DETAILS",
        "EXPORT_WEBHOOK",
    }
)
BREVO_STATUSES = frozenset(
    {"queued", "in_process", "processing", "completed", "failed", "cancelled"}
)
