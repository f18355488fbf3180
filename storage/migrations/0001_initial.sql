-- Recording state: one table per concept. Times are Unix milliseconds (NULL: not yet).
-- Every row carries an explicit status; each table's values are listed with its Go type
-- (storage/calls.go, recordings.go, parts.go, uploads.go).

-- A call the bot recorded: a 1:1 call (its call_id) or a room's group call.
CREATE TABLE calls (
	id         INTEGER PRIMARY KEY,
	room_id    TEXT    NOT NULL,
	call_id    TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	status     TEXT    NOT NULL,
	started_at INTEGER NOT NULL,
	ended_at   INTEGER,
	UNIQUE (room_id, call_id, kind)
);

-- One call folder: a recording of a call. Its id is the short name users type (!delete).
CREATE TABLE recordings (
	id                TEXT    PRIMARY KEY,
	call              INTEGER NOT NULL REFERENCES calls (id),
	room_id           TEXT    NOT NULL,
	folder            TEXT    NOT NULL UNIQUE,
	kind              TEXT    NOT NULL,
	status            TEXT    NOT NULL,
	started_at        INTEGER NOT NULL,
	ended_at          INTEGER,
	duration_ms       INTEGER NOT NULL DEFAULT 0,
	bytes             INTEGER NOT NULL DEFAULT 0,
	participants      INTEGER NOT NULL DEFAULT 0,
	start_event       TEXT    NOT NULL DEFAULT '',
	summary_event     TEXT    NOT NULL DEFAULT '',
	stop_reason       TEXT    NOT NULL DEFAULT '',
	interruptions     INTEGER NOT NULL DEFAULT 0,
	expires_at        INTEGER,
	expiry_noticed_at INTEGER,
	deleted_at        INTEGER,
	updated_at        INTEGER NOT NULL
);
CREATE INDEX recordings_room ON recordings (room_id, started_at);
CREATE INDEX recordings_status ON recordings (status);

-- One file: one part of one logical track of a recording.
CREATE TABLE parts (
	id             INTEGER PRIMARY KEY,
	recording      TEXT    NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
	file           TEXT    NOT NULL,
	track          TEXT    NOT NULL,
	part           INTEGER NOT NULL,
	user_id        TEXT    NOT NULL,
	device_id      TEXT    NOT NULL DEFAULT '',
	display_name   TEXT    NOT NULL DEFAULT '',
	kind           TEXT    NOT NULL,
	codec          TEXT    NOT NULL,
	source         TEXT    NOT NULL DEFAULT '',
	status         TEXT    NOT NULL,
	started_at     INTEGER NOT NULL,
	ended_at       INTEGER,
	start_ms       INTEGER NOT NULL DEFAULT 0,
	duration_ms    INTEGER NOT NULL DEFAULT 0,
	bytes          INTEGER NOT NULL DEFAULT 0,
	sha256         TEXT    NOT NULL DEFAULT '',
	end_reason     TEXT    NOT NULL DEFAULT '',
	token          TEXT    NOT NULL UNIQUE,
	local_deleted  INTEGER NOT NULL DEFAULT 0,
	updated_at     INTEGER NOT NULL,
	UNIQUE (recording, file)
);

-- A copy of one file of a recording (a part, or the manifest) in object storage.
CREATE TABLE uploads (
	id           INTEGER PRIMARY KEY,
	recording    TEXT    NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
	file         TEXT    NOT NULL,
	bucket       TEXT    NOT NULL,
	object_key   TEXT    NOT NULL,
	upload_id    TEXT    NOT NULL DEFAULT '',
	status       TEXT    NOT NULL,
	bytes        INTEGER NOT NULL DEFAULT 0,
	sha256       TEXT    NOT NULL DEFAULT '',
	etag         TEXT    NOT NULL DEFAULT '',
	attempts     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT    NOT NULL DEFAULT '',
	confirmed_by TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	confirmed_at INTEGER,
	UNIQUE (recording, file)
);
CREATE INDEX uploads_key ON uploads (bucket, object_key);

-- The parts of a multipart upload sent so far: where each came from in the file and
-- the MD5 of what was sent, so that bytes rewritten when the file is finalised are sent
-- again before the upload is completed.
CREATE TABLE upload_chunks (
	upload  INTEGER NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
	number  INTEGER NOT NULL,
	offset  INTEGER NOT NULL,
	size    INTEGER NOT NULL,
	md5     TEXT    NOT NULL,
	etag    TEXT    NOT NULL,
	PRIMARY KEY (upload, number)
);
