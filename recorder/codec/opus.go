package codec

// opusClearBytes: the LiveKit SDK leaves the Opus TOC byte in clear (UNENCRYPTED_BYTES).
func opusClearBytes([]byte, bool) (int, bool) { return 1, false }
