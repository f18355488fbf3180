-- v2: Who invited the bot into a room
-- Who invited the bot into a room: recordings running at once are bounded per inviter
-- (recordings.max_per_inviter), so one user cannot take every slot with many rooms.
CREATE TABLE rooms (
	room_id    TEXT    PRIMARY KEY,
	inviter    TEXT    NOT NULL,
	invited_at BIGINT  NOT NULL
);
