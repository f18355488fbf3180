-- v4: Leases: which instance does which work
-- Several recorders can share one PostgreSQL database (a fleet). Each piece of work that
-- must be done by exactly one of them (a recording, a room's autorecord watch) has one
-- lease row: the instance that owns it and until when. The owner renews it every few
-- seconds; once expires_at has passed, another instance may take it over. generation
-- counts the changes of owner (a fencing token: work done under an older generation is
-- stale). Times are the database's clock (Unix milliseconds), so the instances' clocks
-- need not agree.
CREATE TABLE leases (
	resource    TEXT   PRIMARY KEY,
	owner       TEXT   NOT NULL,
	generation  BIGINT NOT NULL,
	acquired_at BIGINT NOT NULL,
	renewed_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL
);
CREATE INDEX leases_owner ON leases (owner);
