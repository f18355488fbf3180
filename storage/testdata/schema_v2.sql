-- A state database as matrix-recorder wrote it before each table had a status type of its
-- own (schema version 2: migrations 0001 and 0002 as released), with a row in every
-- status each table used. TestUpgradeFromVersion2 opens it with the current code.
-- Recording state: one table per concept. Times are Unix milliseconds (NULL: not yet).
-- Every row carries an explicit status; see storage/status.go for the values.

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
-- Who invited the bot into a room: recordings running at once are bounded per inviter
-- (recordings.max_per_inviter), so one user cannot take every slot with many rooms.
CREATE TABLE rooms (
	room_id    TEXT    PRIMARY KEY,
	inviter    TEXT    NOT NULL,
	invited_at INTEGER NOT NULL
);
PRAGMA user_version = 2;

INSERT INTO calls (id, room_id, call_id, kind, status, started_at, ended_at) VALUES
	(1, '!r:x', 'c-live', 'group', 'active', 1700000000000, NULL),
	(2, '!r:x', 'c-done', '1:1', 'ended', 1700000000000, 1700000060000),
	(3, '!r:x', 'c-crash', 'group', 'interrupted', 1700000000000, NULL);

INSERT INTO recordings (id, call, room_id, folder, kind, status, started_at, ended_at, bytes, expires_at, updated_at) VALUES
	('started1', 1, '!r:x', 'f-started', 'group', 'started', 1700000000000, NULL, 0, NULL, 1700000000000),
	('active22', 1, '!r:x', 'f-active', 'group', 'active', 1700000000000, NULL, 0, NULL, 1700000000000),
	('stopping', 1, '!r:x', 'f-stopping', 'group', 'stopping', 1700000000000, NULL, 0, NULL, 1700000000000),
	('saved333', 2, '!r:x', 'f-saved', '1:1', 'saved', 1700000000000, 1700000060000, 10, 1800000000000, 1700000060000),
	('uploaded', 2, '!r:x', 'f-uploaded', '1:1', 'uploaded', 1700000000000, 1700000060000, 10, 1800000000000, 1700000060000),
	('notified', 2, '!r:x', 'f-notified', '1:1', 'notified', 1700000000000, 1700000060000, 10, 1700000100000, 1700000060000),
	('interrup', 3, '!r:x', 'f-interrupted', 'group', 'interrupted', 1700000000000, 1700000030000, 10, NULL, 1700000030000),
	('failednt', 2, '!r:x', 'f-failed-notify', '1:1', 'failed_notify', 1700000000000, 1700000060000, 10, NULL, 1700000060000),
	('expired4', 2, '!r:x', 'f-expired', '1:1', 'expired', 1700000000000, 1700000060000, 10, 1700000100000, 1700000060000),
	('deleted5', 2, '!r:x', 'f-deleted', '1:1', 'deleted', 1700000000000, 1700000060000, 10, NULL, 1700000060000);

INSERT INTO parts (recording, file, track, part, user_id, kind, codec, status, started_at, bytes, token, local_deleted, updated_at) VALUES
	('active22', 'started.ogg', 't1', 1, '@a:x', 'audio', 'opus', 'started', 1700000000000, 0, 'tok-started-0000000000', 0, 1700000000000),
	('active22', 'active.ogg', 't2', 1, '@a:x', 'audio', 'opus', 'active', 1700000000000, 5, 'tok-active-00000000000', 0, 1700000000000),
	('active22', 'saved.ogg', 't3', 1, '@a:x', 'audio', 'opus', 'saved', 1700000000000, 5, 'tok-saved-000000000000', 0, 1700000000000),
	('saved333', 'saved.ogg', 't1', 1, '@a:x', 'audio', 'opus', 'saved', 1700000000000, 100, 'tok-saved2-00000000000', 0, 1700000000000),
	('saved333', 'gone.ogg', 't2', 1, '@a:x', 'audio', 'opus', 'saved', 1700000000000, 1000, 'tok-uploaded-gone-0000', 1, 1700000000000),
	('saved333', 'failed.webm', 't3', 1, '@a:x', 'video', 'vp8', 'failed_write', 1700000000000, 0, 'tok-failed-00000000000', 0, 1700000000000),
	('interrup', 'interrupted.ogg', 't1', 1, '@a:x', 'audio', 'opus', 'interrupted', 1700000000000, 7, 'tok-interrupted-000000', 0, 1700000000000),
	('expired4', 'expired.ogg', 't1', 1, '@a:x', 'audio', 'opus', 'expired', 1700000000000, 9, 'tok-expired-0000000000', 0, 1700000000000),
	('deleted5', 'deleted.ogg', 't1', 1, '@a:x', 'audio', 'opus', 'deleted', 1700000000000, 9, 'tok-deleted-0000000000', 0, 1700000000000);

INSERT INTO uploads (recording, file, bucket, object_key, status, created_at, updated_at) VALUES
	('saved333', 'pending.ogg', 'b', 'k/pending.ogg', 'pending', 1700000000000, 1700000000000),
	('saved333', 'uploading.ogg', 'b', 'k/uploading.ogg', 'uploading', 1700000000000, 1700000000000),
	('saved333', 'uploaded.ogg', 'b', 'k/uploaded.ogg', 'uploaded', 1700000000000, 1700000000000),
	('saved333', 'confirmed.ogg', 'b', 'k/confirmed.ogg', 'confirmed', 1700000000000, 1700000000000),
	('saved333', 'failed.ogg', 'b', 'k/failed.ogg', 'failed_upload', 1700000000000, 1700000000000),
	('expired4', 'expired.ogg', 'b', 'k/expired.ogg', 'expired', 1700000000000, 1700000000000),
	('deleted5', 'deleted.ogg', 'b', 'k/deleted.ogg', 'deleted', 1700000000000, 1700000000000);

INSERT INTO rooms (room_id, inviter, invited_at) VALUES ('!r:x', '@a:x', 1700000000000);
