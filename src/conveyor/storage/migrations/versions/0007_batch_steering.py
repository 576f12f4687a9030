"""batch steering: results kept until the batch goes, cancel, retry, idempotency keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

FAILED = sa.text('status_code < 200 OR status_code > 299')


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('canceled_at', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('retry_of', sa.String(length=10), nullable=True))
        batch_op.add_column(
            sa.Column('rows_kept', sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    # Batches finished before this revision had their operation and result rows dropped (or
    # are having them dropped): their per-operation views are gone; the archive has it all.
    op.execute("UPDATE batches SET rows_kept = false WHERE status = 'finished'")

    # On a prefix of the id: a PostgreSQL index row holds at most 8 KiB (tables.py).
    op.create_index(
        'ix_batch_operations_operation_id',
        'batch_operations',
        ['batch_id', sa.text('substr(operation_id, 1, 200)'), 'seq'],
        unique=False,
    )
    op.create_index(
        'ix_batch_results_failed',
        'batch_results',
        ['batch_id', 'seq', 'page'],
        unique=False,
        sqlite_where=FAILED,
        postgresql_where=FAILED,
    )

    op.create_table(
        'idempotency_keys',
        sa.Column(
            'account_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False
        ),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('body_sha256', sa.String(length=64), nullable=False),
        sa.Column('batch_id', sa.String(length=10), nullable=False),
        sa.Column('created_ts', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('account_pk', 'key', name=op.f('pk_idempotency_keys')),
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index('ix_idempotency_keys_batch', ['batch_id'], unique=False)
        batch_op.create_index('ix_idempotency_keys_created', ['created_ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_idempotency_keys_created')
        batch_op.drop_index('ix_idempotency_keys_batch')
    op.drop_table('idempotency_keys')
    op.drop_index('ix_batch_results_failed', table_name='batch_results')
    op.drop_index('ix_batch_operations_operation_id', table_name='batch_operations')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('rows_kept')
        batch_op.drop_column('retry_of')
        batch_op.drop_column('canceled_at')
