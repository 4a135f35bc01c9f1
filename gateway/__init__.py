"""The gateway: the system's only HTTP face (routing, auth, validation, limits, OpenAPI)."""
