package framecrypt

import (
	"bytes"
	"fmt"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// trailerLen is the IV length byte and the key index byte at the end of every frame.
const trailerLen = 2

// gcmTagLen is the AES-GCM tag WebCrypto appends to the ciphertext.
const gcmTagLen = 16

// KeyIndex returns the key index an encrypted frame names (its last byte).
func KeyIndex(frame []byte) (uint8, bool) {
	if len(frame) == 0 {
		return 0, false
	}
	return frame[len(frame)-1], true
}

// IsServerInjected reports whether frame ends with the SFU's SIF trailer.
func IsServerInjected(frame, sifTrailer []byte) bool {
	return len(sifTrailer) > 0 && bytes.HasSuffix(frame, sifTrailer)
}

// Decryptor decrypts the frames of one track. It is not safe for concurrent use (one per
// track); the keyring it reads may be updated concurrently.
type Decryptor struct {
	enc  *codec.FrameEncryption
	ring *Keyring
	sif  []byte
	body []byte // scratch for unescaped H.264
}

// NewDecryptor returns a decryptor for a track of codec whose sender's keys are in ring.
// sifTrailer is the SFU's server-injected-frame trailer (may be empty).
func NewDecryptor(c media.Codec, ring *Keyring, sifTrailer []byte) (*Decryptor, error) {
	enc, err := encryption(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", err, c)
	}
	if ring == nil {
		return nil, errNoKeyring
	}
	return &Decryptor{enc: enc, ring: ring, sif: bytes.Clone(sifTrailer)}, nil
}

// Decrypt appends the plain frame to dst[:0] and returns it. keyframe is the frame type the
// depacketizer found (it only matters for H.264 frames without a slice). An empty frame is
// returned as it is (the SDK never encrypts empty frames). Errors: ErrServerInjected,
// a *MissingKeyError, ErrAuthentication, ErrMalformed.
func (d *Decryptor) Decrypt(dst, frame []byte, keyframe bool) ([]byte, error) {
	if len(frame) == 0 {
		return append(dst[:0], frame...), nil
	}
	if IsServerInjected(frame, d.sif) {
		return dst[:0], ErrServerInjected
	}
	index := frame[len(frame)-1]
	aeads := d.ring.ciphers(index)
	if len(aeads) == 0 {
		return dst[:0], &MissingKeyError{Index: index}
	}
	n, rbsp := d.enc.ClearBytes(frame, keyframe)
	if n > len(frame) {
		return dst[:0], fmt.Errorf("%w: %d bytes, shorter than its %d-byte clear header", ErrMalformed, len(frame), n)
	}
	body := frame[n:]
	if rbsp && hasEscapes(body) {
		d.body = unescapeRBSP(d.body[:0], body)
		body = d.body
	}
	if len(body) < trailerLen+IVLength+gcmTagLen {
		return dst[:0], fmt.Errorf("%w: %d bytes after the header", ErrMalformed, len(body))
	}
	if ivLen := int(body[len(body)-2]); ivLen != IVLength {
		return dst[:0], fmt.Errorf("%w: IV length %d", ErrMalformed, ivLen)
	}
	ivStart := len(body) - trailerLen - IVLength
	iv := body[ivStart : ivStart+IVLength]
	ct := body[:ivStart]
	header := frame[:n]
	out := append(dst[:0], header...)
	for _, aead := range aeads {
		if plain, err := aead.Open(out, iv, ct, header); err == nil {
			return plain, nil
		}
	}
	if d.enc.AddedPrefix != nil {
		// What the depacketizer put in front of the frame was not part of the sender's clear
		// header (H.264 parameter sets).
		if skip := d.enc.AddedPrefix(header); skip > 0 {
			for _, aead := range aeads {
				if plain, err := aead.Open(out, iv, ct, header[skip:]); err == nil {
					return plain, nil
				}
			}
		}
	}
	return dst[:0], ErrAuthentication
}
