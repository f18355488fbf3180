// Package roomerr says in a room that something failed without showing the error itself,
// whose text can hold internal URLs, paths and hosts: people read a short sentence that
// names an id, and the operator finds the error under that id (error_id) in the log.
package roomerr

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/rs/zerolog"
)

// Report logs err with what failed under a new id and returns the sentence for the room.
func Report(log zerolog.Logger, err error, what string) string {
	id := NewID()
	log.Error().Err(err).Str("error_id", id).Msg(what)
	return Sentence(id)
}

// Clause is Report as a clause for the middle of a sentence ("I could not connect to
// Bob: something went wrong (error a1b2c3 in the operator's log).").
func Clause(log zerolog.Logger, err error, what string) string {
	id := NewID()
	log.Error().Err(err).Str("error_id", id).Msg(what)
	return "something went wrong (error " + id + " in the operator's log)"
}

// Sentence is what a room reads about an error logged under id.
func Sentence(id string) string {
	return "Something went wrong (error " + id + "); the operator can find it in the log."
}

// NewID returns a short random id for one error: six hex digits, enough to find one
// error among a day's log lines.
func NewID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
