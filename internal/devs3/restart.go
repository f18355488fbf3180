package devs3

import (
	"context"
	"errors"
)

// Halt stops MinIO but keeps its data, port and keys, so that Restart brings the same
// server back (tests of a store that goes away in the middle of an upload).
func (s *Server) Halt() error {
	if s.proc == nil {
		return errors.New("minio is not running")
	}
	err := s.proc.Stop()
	s.proc = nil
	return err
}

// Restart starts a halted server again on the same port, with the same data and keys.
func (s *Server) Restart(ctx context.Context) error {
	if s.proc != nil {
		return errors.New("minio is running")
	}
	s.samePort = true
	return s.start(ctx, s.bin)
}
