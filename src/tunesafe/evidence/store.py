"""The evidence store. CONTRACT (implemented by the foundation work; other packages code against it):

    store = Store.open(url)            # runs Alembic migrations; UserError (exit 2) if unreachable/corrupt
    rec = store.append(type, body, actor=None, subject=None) -> EvidenceRecord   # chained, serialized
    store.records(type=None, subject=None) -> Iterator[EvidenceRecord]          # in chain order
    store.get(record_id) -> EvidenceRecord
    store.verify() -> VerifyResult     # .ok, .checked, .first_bad (id, expected, found)
    store.engine                        # sqlalchemy Engine, for runs/attempt_results/response_cache
    store.session() -> Session          # context manager
    store.close()

hash = sha256(prev_hash || canonical_json(envelope)) where the envelope holds type, body, created_at,
actor and subject, so none of them can be edited unnoticed.
"""
