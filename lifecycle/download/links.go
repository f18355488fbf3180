package download

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// Signer signs download links with an expiry, so that a link posted in a room stops
// working like a presigned one does. The key is the recorder's own (data_dir).
type Signer struct{ key []byte }

// NewSigner returns a signer for key (at least 32 random bytes).
func NewSigner(key []byte) *Signer { return &Signer{key: append([]byte(nil), key...)} }

// Query parameters of a signed link.
const (
	expiresParam   = "exp"
	signatureParam = "sig"
)

// URL is the signed link to a file for a public base URL, valid until expires.
func (s *Signer) URL(base, token, file string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return URL(base, token, file) + "?" + expiresParam + "=" + exp + "&" + signatureParam + "=" + s.sign(token, exp)
}

func (s *Signer) sign(token, exp string) string {
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
func (s *Signer) check(q url.Values, token string, now time.Time) linkState {
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

// KeyFile in data_dir holds the key that signs the recorder's own download links.
const KeyFile = "link.key"

// LoadSigner reads the link-signing key from data_dir, generating it on first use.
func LoadSigner(dataDir string) (*Signer, error) {
	path := filepath.Join(dataDir, KeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		if key, derr := hex.DecodeString(strings.TrimSpace(string(data))); derr == nil && len(key) >= 32 {
			return NewSigner(key), nil
		}
		return nil, fmt.Errorf("%s is not a link key (64 hex digits); delete it to make a new one (links posted so far stop working)", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the link key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate the link key: %w", err)
	}
	if err := datadir.WriteSecret(path, []byte(hex.EncodeToString(key)+"\n")); err != nil {
		return nil, fmt.Errorf("write the link key: %w", err)
	}
	return NewSigner(key), nil
}
