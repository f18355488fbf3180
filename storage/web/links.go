package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// LinkSigner signs download links with an expiry, so that a link posted in a room stops
// working like a presigned one does. The key is the recorder's own (data_dir).
type LinkSigner struct{ key []byte }

// NewLinkSigner returns a signer for key (at least 32 random bytes).
func NewLinkSigner(key []byte) *LinkSigner { return &LinkSigner{key: append([]byte(nil), key...)} }

// Query parameters of a signed link.
const (
	expiresParam   = "exp"
	signatureParam = "sig"
)

// URL is the signed link to a file for a public base URL, valid until expires.
func (s *LinkSigner) URL(base, token, file string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return DownloadURL(base, token, file) + "?" + expiresParam + "=" + exp + "&" + signatureParam + "=" + s.sign(token, exp)
}

func (s *LinkSigner) sign(token, exp string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("matrix-recorder download\n" + token + "\n" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// linkState is what a request's link says about itself.
type linkState int

const (
	linkUnknown linkState = iota
	// linkLegacy: no signature (links posted before links were signed).
	linkLegacy
	linkValid
	linkExpired
	linkForged
)

// check verifies the signature and expiry of a request's link.
func (s *LinkSigner) check(q url.Values, token string, now time.Time) linkState {
	exp, sig := q.Get(expiresParam), q.Get(signatureParam)
	if exp == "" && sig == "" {
		return linkLegacy
	}
	if s == nil || exp == "" || sig == "" {
		return linkForged
	}
	if !hmac.Equal([]byte(sig), []byte(s.sign(token, exp))) {
		return linkForged
	}
	at, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return linkForged
	}
	if !now.Before(time.Unix(at, 0)) {
		return linkExpired
	}
	return linkValid
}

// linkUsable answers a request whose link is forged or expired, and says whether the
// download may go on.
func (s *server) linkUsable(w http.ResponseWriter, r *http.Request, token string, rec *storage.Recording) bool {
	now := time.Now()
	if s.o.Now != nil {
		now = s.o.Now()
	}
	switch s.o.Links.check(r.URL.Query(), token, now) {
	case linkValid:
		return true
	case linkLegacy:
		// Links from before signing: they expire like the signed ones, counted from the
		// end of the recording (when they were posted).
		if s.o.LinkExpiry > 0 && !rec.EndedAt.IsZero() && now.Before(rec.EndedAt.Add(s.o.LinkExpiry)) {
			return true
		}
	case linkForged:
		http.NotFound(w, r)
		return false
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "This link has expired. Type "+s.o.CommandPrefix+"recordings "+rec.ID+" in the room for a fresh one.", http.StatusGone)
	return false
}
