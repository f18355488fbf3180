// Package framecrypt decrypts (and, for tests and test peers, encrypts) media frames in the
// end-to-end encryption format of LiveKit's client SDK, which Element Call uses with keys
// sent over Matrix (protocols.md §3.6).
//
// An encrypted frame is
//
//	[clear header (n bytes, the AES-GCM additional data)] [ciphertext ‖ 16-byte tag] [IV (12)] [12] [key index]
//
// where n depends on the codec: Opus 1 (the TOC byte), VP8 10 for a key frame and 3 for a
// delta frame (RFC 6386 frame tag), VP9 0, and H.264 everything up to and including the
// first byte after the first slice NAL unit's header. For H.264 the part after the header
// is additionally escaped with emulation prevention bytes (RBSP), so that the frame stays a
// valid Annex B stream. Frames are whole encoded frames, before RTP packetization and after
// depacketization. The AES-128 key is HKDF-SHA256(key material, salt "LKFrameEncryptionKey",
// info 128 zero bytes). Frames ending with the server's SIF trailer were injected by the SFU
// unencrypted and are not media of the participant.
package framecrypt
