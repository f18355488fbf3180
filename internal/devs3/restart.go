package devs3

import (
	"context"
	"errors"
)

// Halt stops the server but keeps its data, port and keys, so that Restart brings the
// same server back (tests of a store that goes away in the middle of an upload). Open
// multipart uploads survive: versitygw keeps their parts in the bucket's folder.
func (s *Server) Halt() error {
	if s.proc == nil {
		return errors.New("the S3 server is not running")
	}
	err := s.proc.Stop()
	s.proc = nil
	return err
}

// Restart starts a halted server again on the same port, with the same data and keys.
// With Options.Webhook, its receiver must answer (see Options.Webhook).
func (s *Server) Restart(ctx context.Context) error {
	if s.proc != nil {
		return errors.New("the S3 server is running")
	}
	s.samePort = true
	return s.start(ctx)
}
