"""Auth: owns users, credentials and refresh-token families; issues and verifies JWTs."""
