package framecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
)

// Parameters of the format, as LiveKit's client SDK uses them.
const (
	// Salt is the HKDF salt (and PBKDF2 salt for passphrases).
	Salt = "LKFrameEncryptionKey"
	// KeySize is the AES key size in bytes (AES-128).
	KeySize = 16
	// IVLength is the GCM nonce length the SDK writes.
	IVLength = 12
	// hkdfInfoLength is the length of the all-zero HKDF info.
	hkdfInfoLength = 128
	// MaxMaterial bounds key material taken from remote events.
	MaxMaterial = 64
	// keysPerIndex is how many keys one index remembers: the newest and the one it replaced,
	// for frames still in flight when a key is replaced.
	keysPerIndex = 2
)

// DeriveKey turns key material (Element Call sends 16 random bytes per key) into the AES-128
// frame key: HKDF-SHA256 with salt "LKFrameEncryptionKey" and 128 zero bytes of info.
func DeriveKey(material []byte) ([]byte, error) {
	if len(material) == 0 || len(material) > MaxMaterial {
		return nil, fmt.Errorf("key material of %d bytes: want 1 to %d", len(material), MaxMaterial)
	}
	key, err := hkdf.Key(sha256.New, material, []byte(Salt), string(make([]byte, hkdfInfoLength)), KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive frame key: %w", err)
	}
	return key, nil
}

// newAEAD returns AES-GCM with the SDK's 12-byte nonce for a derived key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("frame key of %d bytes: want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithNonceSize(block, IVLength)
}

// Keyring holds one participant's keys by key index (0-255, as the frame trailer carries
// it). It is safe for concurrent use: keys arrive from Matrix while frames are decrypted.
type Keyring struct {
	mu      sync.RWMutex
	slots   [256]slot
	version uint64
}

type slot struct {
	// aeads holds the newest key first.
	aeads []cipher.AEAD
	// generation changes whenever the slot gets a key.
	generation uint64
}

// NewKeyring returns an empty keyring.
func NewKeyring() *Keyring { return &Keyring{} }

// SetKey derives the frame key from material and stores it at index. A key already at the
// index stays usable as a fallback (frames in flight), older ones are forgotten.
func (k *Keyring) SetKey(index uint8, material []byte) error {
	key, err := DeriveKey(material)
	if err != nil {
		return err
	}
	return k.SetDerivedKey(index, key)
}

// SetDerivedKey stores an already derived 16-byte AES key at index.
func (k *Keyring) SetDerivedKey(index uint8, key []byte) error {
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	s := &k.slots[index]
	s.aeads = append([]cipher.AEAD{aead}, s.aeads...)
	if len(s.aeads) > keysPerIndex {
		s.aeads = s.aeads[:keysPerIndex]
	}
	k.version++
	s.generation = k.version
	return nil
}

// Has reports whether a key is known at index.
func (k *Keyring) Has(index uint8) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.slots[index].aeads) > 0
}

// Generation identifies the keys at index: it changes whenever a key is set there, and is 0
// while there is none.
func (k *Keyring) Generation(index uint8) uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.slots[index].generation
}

// Version changes whenever any key is set.
func (k *Keyring) Version() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.version
}

// Len counts the indexes that hold a key.
func (k *Keyring) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	n := 0
	for i := range k.slots {
		if len(k.slots[i].aeads) > 0 {
			n++
		}
	}
	return n
}

// ciphers returns the keys at index, newest first (shared; cipher.AEAD is safe for
// concurrent use).
func (k *Keyring) ciphers(index uint8) []cipher.AEAD {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.slots[index].aeads
}

var errNoKeyring = errors.New("no keyring")
