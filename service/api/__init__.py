"""The read-only lookup API: HookBridge's /v1/exports, fed by status events."""
