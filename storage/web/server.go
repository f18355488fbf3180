package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Limits bound what one client can hold of the server: a connection that sends its
// headers or body too slowly, reads the answer too slowly or idles is closed.
type Limits struct {
	// ReadHeader bounds reading a request's headers; Read the whole request.
	ReadHeader time.Duration
	Read       time.Duration
	// Write is how long a response may go without progress: every write of the answer
	// gives it this much more time (a large download on a slow link goes on; a client
	// that stops reading is dropped).
	Write time.Duration
	// Idle bounds a kept-alive connection between requests.
	Idle time.Duration
	// Body bounds reading a request's body, in every handler.
	Body time.Duration
	// MaxHeaderBytes and MaxBodyBytes bound a request's size.
	MaxHeaderBytes int
	MaxBodyBytes   int64
}

// DefaultLimits are the server's limits.
func DefaultLimits() Limits {
	return Limits{
		ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: time.Minute, Idle: time.Minute,
		Body: 20 * time.Second, MaxHeaderBytes: 64 << 10, MaxBodyBytes: 4 << 20,
	}
}

// Serve runs the server on listen with DefaultLimits until ctx ends, then shuts it down
// (bounded).
func Serve(ctx context.Context, listen string, h http.Handler, log zerolog.Logger) (addr string, done <-chan error, err error) {
	return ServeWith(ctx, listen, h, log, DefaultLimits())
}

// ServeWith is Serve with limits.
func ServeWith(ctx context.Context, listen string, h http.Handler, log zerolog.Logger, l Limits) (addr string, done <-chan error, err error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, fmt.Errorf("http.listen %s: %w", listen, err)
	}
	srv := newServer(bounded(h, l), l)
	out := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		out <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info().Str("listen", ln.Addr().String()).Msg("HTTP server listening")
	return ln.Addr().String(), out, nil
}

func newServer(h http.Handler, l Limits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// bounded gives every handler a deadline for the request body and a size limit, and
// turns the server's write timeout into a timeout without progress.
func bounded(h http.Handler, l Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.ContentLength != 0 {
			_ = rc.SetReadDeadline(time.Now().Add(l.Body))
			r.Body = http.MaxBytesReader(w, r.Body, l.MaxBodyBytes)
		}
		h.ServeHTTP(&progressWriter{ResponseWriter: w, rc: rc, every: l.Write}, r)
	})
}

// progressWriter extends the connection's write deadline whenever some of the answer
// was written.
type progressWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	every time.Duration
	last  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	// Extending costs a timer reset: do it a few times per period, so the deadline is
	// always most of a period away when a write begins.
	if now := time.Now(); now.Sub(p.last) >= min(time.Second, p.every/4) {
		p.last = now
		_ = p.rc.SetWriteDeadline(now.Add(p.every))
	}
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// eventPrecheck refuses a bucket notification before its body is read: without a token
// (401), without a declared length (411: chunked bodies are not read) or longer than an
// event can be (413).
func (s *server) eventPrecheck(w http.ResponseWriter, r *http.Request) bool {
	code := 0
	switch {
	case r.URL.Query().Get("token") == "" && r.Header.Get("Authorization") == "":
		s.o.Log.Warn().Str("remote", r.RemoteAddr).Msg("Storage event without a token")
		code = http.StatusUnauthorized
	case r.ContentLength < 0:
		code = http.StatusLengthRequired
	case r.ContentLength > maxEventBody:
		code = http.StatusRequestEntityTooLarge
	default:
		return true
	}
	// The body stays unread; do not keep the connection for what may follow it.
	w.Header().Set("Connection", "close")
	http.Error(w, http.StatusText(code), code)
	return false
}
