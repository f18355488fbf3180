package framecrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/livekit/server-sdk-go/v2/e2ee"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// The key derivation agrees with LiveKit's Go SDK (an independent implementation of the
// same HKDF parameters) for key material of the sizes Element Call and the draft MSC use.
func TestDeriveKeyMatchesServerSDK(t *testing.T) {
	for _, n := range []int{16, 32, 1, 64} {
		material := randomBytes(t, n)
		got, err := DeriveKey(material)
		if err != nil {
			t.Fatal(err)
		}
		want, err := lksdk.DeriveKeyFromBytes(material)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d-byte material: key %x, server-sdk-go derives %x", n, got, want)
		}
	}
	for _, n := range []int{0, 65} {
		if _, err := DeriveKey(make([]byte, n)); err == nil {
			t.Errorf("%d bytes of key material accepted", n)
		}
	}
}

// referenceEncrypt is the frame format written out from the description in protocols.md
// §3.6, independently of Encryptor: clear header, AES-GCM(rest, AAD = header), IV, 12, kid.
func referenceEncrypt(t *testing.T, material []byte, kid uint8, frame []byte, clear int) []byte {
	t.Helper()
	key, err := lksdk.DeriveKeyFromBytes(material)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	iv := randomBytes(t, 12)
	out := append([]byte(nil), frame[:clear]...)
	out = gcm.Seal(out, iv, frame[clear:], frame[:clear])
	out = append(out, iv...)
	return append(out, 12, kid)
}

// referenceDecrypt opens a frame with the clear header length given by the test.
func referenceDecrypt(t *testing.T, material []byte, frame []byte, clear int) []byte {
	t.Helper()
	key, err := lksdk.DeriveKeyFromBytes(material)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	ivLen := int(frame[len(frame)-2])
	iv := frame[len(frame)-2-ivLen : len(frame)-2]
	plain, err := gcm.Open(nil, iv, frame[clear:len(frame)-2-ivLen], frame[:clear])
	if err != nil {
		t.Fatalf("reference decrypt: %v", err)
	}
	return append(append([]byte(nil), frame[:clear]...), plain...)
}

func assetFrames(t *testing.T, name string) []testmedia.Frame {
	t.Helper()
	frames, err := testmedia.Frames(name)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

func newRing(t *testing.T, keys map[uint8][]byte) *Keyring {
	t.Helper()
	r := NewKeyring()
	for i, k := range keys {
		if err := r.SetKey(i, k); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// VP8 and VP9 (no Go SDK support to compare with): frames encrypted by the reference
// decrypt with Decryptor, and Encryptor's frames open with the reference, with the clear
// header lengths of the format (VP8 key 10, delta 3; VP9 0).
func TestVPXAgainstReference(t *testing.T) {
	for _, tc := range []struct {
		asset string
		codec media.Codec
		clear func(f testmedia.Frame) int
	}{
		{testmedia.VP8, media.CodecVP8, func(f testmedia.Frame) int {
			if f.Keyframe {
				return 10
			}
			return 3
		}},
		{testmedia.VP9, media.CodecVP9, func(testmedia.Frame) int { return 0 }},
	} {
		t.Run(tc.codec.String(), func(t *testing.T) {
			material := randomBytes(t, 16)
			dec, err := NewDecryptor(tc.codec, newRing(t, map[uint8][]byte{3: material}), nil)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := NewEncryptor(tc.codec, 0x1234)
			if err != nil {
				t.Fatal(err)
			}
			if err := enc.SetKey(3, material); err != nil {
				t.Fatal(err)
			}
			var keys, deltas int
			for i, f := range assetFrames(t, tc.asset) {
				if f.Keyframe {
					keys++
				} else {
					deltas++
				}
				n := tc.clear(f)
				got, err := dec.Decrypt(nil, referenceEncrypt(t, material, 3, f.Data, n), f.Keyframe)
				if err != nil {
					t.Fatalf("frame %d (key %v): %v", i, f.Keyframe, err)
				}
				if !bytes.Equal(got, f.Data) {
					t.Fatalf("frame %d: decrypted frame differs", i)
				}
				ours, err := enc.Encrypt(nil, f.Data, f.Keyframe, uint32(i*6000))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ours[:n], f.Data[:n]) || ours[len(ours)-1] != 3 || ours[len(ours)-2] != 12 {
					t.Fatalf("frame %d: encrypted header or trailer wrong", i)
				}
				if len(ours) != len(f.Data)+16+12+2 {
					t.Fatalf("frame %d: %d bytes encrypted from %d", i, len(ours), len(f.Data))
				}
				if !bytes.Equal(referenceDecrypt(t, material, ours, n), f.Data) {
					t.Fatalf("frame %d: reference decrypts something else", i)
				}
			}
			if keys == 0 || deltas == 0 {
				t.Fatalf("asset has %d key and %d delta frames; the test needs both", keys, deltas)
			}
		})
	}
}

// Opus and H.264: LiveKit's Go SDK implements both formats; frames go both ways.
func TestOpusAndH264AgainstServerSDK(t *testing.T) {
	material := randomBytes(t, 16)
	key, err := lksdk.DeriveKeyFromBytes(material)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		asset string
		codec media.Codec
		enc   func([]byte) ([]byte, error)
		dec   func([]byte) ([]byte, error)
	}{
		{testmedia.Tone440, media.CodecOpus,
			func(f []byte) ([]byte, error) { return lksdk.EncryptGCMAudioSample(f, key, 7) },
			func(f []byte) ([]byte, error) { return lksdk.DecryptGCMAudioSample(f, key, nil) }},
		{testmedia.H264, media.CodecH264,
			func(f []byte) ([]byte, error) { return e2ee.EncryptGCMH264Sample(f, key, 7) },
			func(f []byte) ([]byte, error) { return e2ee.DecryptGCMH264Sample(f, key, nil) }},
	} {
		t.Run(tc.codec.String(), func(t *testing.T) {
			dec, err := NewDecryptor(tc.codec, newRing(t, map[uint8][]byte{7: material}), nil)
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := NewEncryptor(tc.codec, 99)
			if err := enc.SetKey(7, material); err != nil {
				t.Fatal(err)
			}
			escaped := 0
			for i, f := range assetFrames(t, tc.asset) {
				theirs, err := tc.enc(f.Data)
				if err != nil {
					t.Fatal(err)
				}
				got, err := dec.Decrypt(nil, theirs, f.Keyframe)
				if err != nil {
					t.Fatalf("frame %d encrypted by server-sdk-go: %v", i, err)
				}
				if !bytes.Equal(got, f.Data) {
					t.Fatalf("frame %d encrypted by server-sdk-go: decrypted frame differs", i)
				}
				ours, err := enc.Encrypt(nil, f.Data, f.Keyframe, uint32(i*960))
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(ours, []byte{0, 0, 3}) {
					escaped++
				}
				back, err := tc.dec(ours)
				if err != nil {
					t.Fatalf("frame %d: server-sdk-go cannot decrypt ours: %v", i, err)
				}
				if !bytes.Equal(back, f.Data) {
					t.Fatalf("frame %d: server-sdk-go decrypts ours to something else", i)
				}
			}
			if tc.codec == media.CodecH264 && escaped == 0 {
				t.Error("no encrypted H.264 frame needed emulation prevention; the RBSP path is untested")
			}
		})
	}
}

func encryptWith(t *testing.T, codec media.Codec, index uint8, material, frame []byte, keyframe bool) []byte {
	t.Helper()
	enc, err := NewEncryptor(codec, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetKey(index, material); err != nil {
		t.Fatal(err)
	}
	out, err := enc.Encrypt(nil, frame, keyframe, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Rotation: each frame names its key index; a missing index says which; a replaced key
// keeps opening frames still in flight, a third key at the same index forgets the first.
func TestKeyIndexesAndReplacement(t *testing.T) {
	opus := assetFrames(t, testmedia.Tone440)[0].Data
	k0, k1, k0b, k0c := randomBytes(t, 16), randomBytes(t, 16), randomBytes(t, 16), randomBytes(t, 16)
	ring := NewKeyring()
	dec, _ := NewDecryptor(media.CodecOpus, ring, nil)

	f0 := encryptWith(t, media.CodecOpus, 0, k0, opus, true)
	f1 := encryptWith(t, media.CodecOpus, 1, k1, opus, true)
	if idx, _ := KeyIndex(f1); idx != 1 {
		t.Fatalf("KeyIndex = %d, want 1", idx)
	}
	_, err := dec.Decrypt(nil, f0, true)
	var mk *MissingKeyError
	if !errors.As(err, &mk) || mk.Index != 0 || !errors.Is(err, ErrMissingKey) {
		t.Fatalf("without keys: %v, want a missing key 0", err)
	}
	if ring.Generation(0) != 0 || ring.Has(0) {
		t.Fatal("empty ring reports a key")
	}
	if err := ring.SetKey(0, k0); err != nil {
		t.Fatal(err)
	}
	g0 := ring.Generation(0)
	if _, err := dec.Decrypt(nil, f0, true); err != nil {
		t.Fatalf("key 0: %v", err)
	}
	if _, err := dec.Decrypt(nil, f1, true); !errors.Is(err, ErrMissingKey) {
		t.Fatalf("key 1 not there yet: %v", err)
	}
	_ = ring.SetKey(1, k1)
	if got, err := dec.Decrypt(nil, f1, true); err != nil || !bytes.Equal(got, opus) {
		t.Fatalf("key 1: %v", err)
	}
	_ = ring.SetKey(0, k0b)
	if ring.Generation(0) == g0 {
		t.Fatal("replacing a key did not change the generation")
	}
	if _, err := dec.Decrypt(nil, f0, true); err != nil {
		t.Fatalf("frame under the replaced key: %v", err)
	}
	if _, err := dec.Decrypt(nil, encryptWith(t, media.CodecOpus, 0, k0b, opus, true), true); err != nil {
		t.Fatalf("frame under the new key: %v", err)
	}
	_ = ring.SetKey(0, k0c)
	if _, err := dec.Decrypt(nil, f0, true); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("two replacements later the first key still works: %v", err)
	}
	if ring.Len() != 2 {
		t.Fatalf("ring holds %d indexes, want 2", ring.Len())
	}
}

func TestRejectsBadFrames(t *testing.T) {
	material := randomBytes(t, 16)
	vp8 := assetFrames(t, testmedia.VP8)[0]
	dec, _ := NewDecryptor(media.CodecVP8, newRing(t, map[uint8][]byte{0: material}), []byte("LKROCKS"))
	good := encryptWith(t, media.CodecVP8, 0, material, vp8.Data, true)

	if _, err := dec.Decrypt(nil, encryptWith(t, media.CodecVP8, 0, randomBytes(t, 16), vp8.Data, true), true); !errors.Is(err, ErrAuthentication) {
		t.Errorf("wrong key: %v", err)
	}
	flipped := bytes.Clone(good)
	flipped[5] ^= 1 // in the clear header: authenticated, not encrypted
	if _, err := dec.Decrypt(nil, flipped, true); !errors.Is(err, ErrAuthentication) {
		t.Errorf("changed header: %v", err)
	}
	for _, n := range []int{1, 2, 11, 12 + 2 + 10 + 15} {
		short := append(bytes.Clone(good[:n-1]), 0)
		if _, err := dec.Decrypt(nil, short, true); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuthentication) {
			t.Errorf("%d-byte frame: %v", n, err)
		}
	}
	badIV := bytes.Clone(good)
	badIV[len(badIV)-2] = 16
	if _, err := dec.Decrypt(nil, badIV, true); !errors.Is(err, ErrMalformed) {
		t.Errorf("IV length 16: %v", err)
	}
	if _, err := dec.Decrypt(nil, append(bytes.Clone(vp8.Data), "LKROCKS"...), true); !errors.Is(err, ErrServerInjected) {
		t.Errorf("SIF frame: %v", err)
	}
	if got, err := dec.Decrypt(nil, nil, false); err != nil || len(got) != 0 {
		t.Errorf("empty frame: %v", err)
	}
	if _, err := NewDecryptor(media.CodecAV1, NewKeyring(), nil); !errors.Is(err, ErrUnsupportedCodec) {
		t.Errorf("AV1: %v", err)
	}
}

// The recorder's H.264 depacketizer inserts the last SPS and PPS before an IDR access unit
// that lacks them; such a frame still decrypts, and keeps the inserted parameter sets.
func TestH264InsertedParameterSets(t *testing.T) {
	frames := assetFrames(t, testmedia.H264)
	var sps, pps, idr []byte
	r, err := h264reader.NewReader(bytes.NewReader(frames[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	for {
		nal, err := r.NextNAL()
		if err != nil {
			break
		}
		switch nal.UnitType {
		case h264reader.NalUnitTypeSPS:
			sps = nal.Data
		case h264reader.NalUnitTypePPS:
			pps = nal.Data
		case h264reader.NalUnitTypeCodedSliceIdr:
			idr = nal.Data
		}
	}
	if sps == nil || pps == nil || idr == nil {
		t.Fatal("asset key frame without SPS, PPS and IDR slice")
	}
	bare := append([]byte{0, 0, 0, 1}, idr...) // what a sender sent: the IDR slice alone
	material := randomBytes(t, 16)
	enc := encryptWith(t, media.CodecH264, 0, material, bare, true)
	sc := []byte{0, 0, 0, 1}
	received := append(append(append(append(append([]byte(nil), sc...), sps...), sc...), pps...), enc...)
	dec, _ := NewDecryptor(media.CodecH264, newRing(t, map[uint8][]byte{0: material}), nil)
	got, err := dec.Decrypt(nil, received, true)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append(append(append([]byte(nil), sc...), sps...), sc...), pps...), bare...)
	if !bytes.Equal(got, want) {
		t.Fatal("decrypted frame lost the inserted parameter sets or differs")
	}
}

func TestRBSPRoundTrip(t *testing.T) {
	cases := [][]byte{
		{0, 0, 0, 0, 0},
		{0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4},
		{1, 2, 0, 0},
		{0, 0, 3},
	}
	for i := 0; i < 200; i++ {
		b := randomBytes(t, 64)
		for j := range b {
			b[j] &= 3 // lots of zeros and small bytes
		}
		cases = append(cases, b)
	}
	for _, c := range cases {
		esc := escapeRBSP(nil, c)
		for i := 0; i+2 < len(esc); i++ {
			if esc[i] == 0 && esc[i+1] == 0 && esc[i+2] <= 2 {
				t.Fatalf("escaped %x still has 00 00 %02x", c, esc[i+2])
			}
		}
		if got := unescapeRBSP(nil, esc); !bytes.Equal(got, c) {
			t.Fatalf("round trip of %x gave %x", c, got)
		}
	}
}

// Decrypt must never panic or read out of bounds, whatever arrives.
func FuzzDecrypt(f *testing.F) {
	material := []byte("0123456789abcdef")
	codecs := []media.Codec{media.CodecOpus, media.CodecVP8, media.CodecVP9, media.CodecH264}
	for i, c := range codecs {
		enc, _ := NewEncryptor(c, 5)
		_ = enc.SetKey(0, material)
		out, _ := enc.Encrypt(nil, []byte{0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 2, 3, 4, 5}, true, 1)
		f.Add(uint8(i), out)
	}
	f.Add(uint8(3), []byte{0, 0, 1, 5, 0, 0, 3, 0, 12, 0})
	f.Fuzz(func(t *testing.T, c uint8, frame []byte) {
		codec := codecs[int(c)%len(codecs)]
		ring := NewKeyring()
		_ = ring.SetKey(0, material)
		if len(frame) > 0 {
			_ = ring.SetKey(frame[len(frame)-1], material)
		}
		dec, _ := NewDecryptor(codec, ring, []byte{0xde, 0xad})
		_, _ = dec.Decrypt(make([]byte, 0, 8), frame, c&0x80 != 0)
	})
}
