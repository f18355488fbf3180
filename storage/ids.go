package storage

import (
	"crypto/rand"
	"encoding/base64"
)

// idAlphabet has no look-alike characters (0/o, 1/l/i), so ids read out loud or typed
// from a phone come out right.
const idAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"

// newID returns a short random recording id (8 characters, about 40 bits).
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails on Linux (Go 1.24+ panics rather than return an error)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// NewToken returns an unguessable download token (128 random bits, URL-safe).
func NewToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
