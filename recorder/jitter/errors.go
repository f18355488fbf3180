package jitter

import "errors"

// errBadVersion is wrapped by Push for packets whose RTP version is not 2.
var errBadVersion = errors.New("not rtp version 2")
