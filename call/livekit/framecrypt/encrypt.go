package framecrypt

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Encryptor encrypts the frames of one sending track exactly as LiveKit's client SDK does
// (FrameCryptor.encodeFunction): the codec's clear header, AES-128-GCM over the rest with
// the header as additional data, then IV, IV length and key index; for H.264 the part after
// the header is RBSP-escaped. The recorder only decrypts; test peers and unit tests use this
// to produce frames as Element Call sends them.
type Encryptor struct {
	enc       *codec.FrameEncryption
	ssrc      uint32
	sendCount uint32
	aead      cipher.AEAD
	index     uint8
	scratch   []byte
}

// NewEncryptor returns an encryptor for a track of codec sent with the given SSRC (part of
// the IV, as in the SDK). It has no key until SetKey.
func NewEncryptor(c media.Codec, ssrc uint32) (*Encryptor, error) {
	enc, err := encryption(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", err, c)
	}
	// The SDK starts each SSRC's send counter at a random offset.
	return &Encryptor{enc: enc, ssrc: ssrc, sendCount: uint32(rand.IntN(0xffff))}, nil
}

// SetKey derives the frame key from material and uses it, under index, for the next frames.
func (e *Encryptor) SetKey(index uint8, material []byte) error {
	key, err := DeriveKey(material)
	if err != nil {
		return err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	e.aead, e.index = aead, index
	return nil
}

// KeyIndex is the index the next frames are encrypted under.
func (e *Encryptor) KeyIndex() uint8 { return e.index }

// Encrypt appends the encrypted form of frame to dst[:0]. rtpTimestamp is the frame's RTP
// timestamp (part of the IV). Empty frames are returned unencrypted, as the SDK does.
func (e *Encryptor) Encrypt(dst, frame []byte, keyframe bool, rtpTimestamp uint32) ([]byte, error) {
	if len(frame) == 0 {
		return append(dst[:0], frame...), nil
	}
	if e.aead == nil {
		return dst[:0], fmt.Errorf("encrypt: %w", ErrMissingKey)
	}
	n, rbsp := e.enc.ClearBytes(frame, keyframe)
	n = min(n, len(frame))
	var iv [IVLength]byte
	binary.BigEndian.PutUint32(iv[0:], e.ssrc)
	binary.BigEndian.PutUint32(iv[4:], rtpTimestamp)
	binary.BigEndian.PutUint32(iv[8:], rtpTimestamp-e.sendCount%0xffff)
	e.sendCount++

	header := frame[:n]
	// ciphertext ‖ tag ‖ IV ‖ IV length ‖ key index
	body := e.aead.Seal(e.scratch[:0], iv[:], frame[n:], header)
	body = append(body, iv[:]...)
	body = append(body, IVLength, e.index)
	e.scratch = body
	out := append(dst[:0], header...)
	if rbsp {
		return escapeRBSP(out, body), nil
	}
	return append(out, body...), nil
}
