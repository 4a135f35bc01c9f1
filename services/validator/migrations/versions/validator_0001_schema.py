"""The validator schema: only its version table. A validator keeps its state in Redis and
holds no database connection; the schema is there because every service of the catalog
(shared/catalog.py) owns one, and `paysys migrate` brings each to its newest revision.

Revision ID: validator_0001
Revises:
"""
revision = "validator_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    # shared/migrations/env.py creates the schema (the version table lives in it).
    pass


def downgrade():
    pass
