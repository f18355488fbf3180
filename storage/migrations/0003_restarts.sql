-- v3: What a restart must not forget: opt-outs, answered calls, name marks
-- What a restart of the bot must not forget (its statuses are in the Go types of
-- storage/optouts.go, answers.go and marks.go).

-- Who asked not to be recorded in a room (!skipme), until they take it back (!recordme).
CREATE TABLE opt_outs (
	room_id TEXT    NOT NULL,
	user_id TEXT    NOT NULL,
	since   BIGINT  NOT NULL,
	PRIMARY KEY (room_id, user_id)
);

-- A recording of a direct call the bot answered: it resumes as one (it ends when the
-- caller leaves, without a group grace time).
CREATE TABLE answers (
	recording TEXT PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
	caller    TEXT NOT NULL,
	intent    TEXT NOT NULL DEFAULT ''
);

-- Rooms where the bot's display name may carry the recording mark: set before the mark is
-- sent, removed once the plain name is back, so a start-up finds the marks a stop left.
CREATE TABLE name_marks (
	room_id   TEXT    PRIMARY KEY,
	marked_at BIGINT  NOT NULL
);
