package httpserver

import (
	"net/http"
	"time"
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
	// Write in small pieces, so that one large write to a slow reader is many steps of
	// progress, each with the deadline most of a period away when it begins.
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), progressChunk)]
		// Extending costs a timer reset: do it a few times per period.
		if now := time.Now(); now.Sub(p.last) >= min(time.Second, p.every/4) {
			p.last = now
			_ = p.rc.SetWriteDeadline(now.Add(p.every))
		}
		k, err := p.ResponseWriter.Write(chunk)
		n += k
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

// progressChunk is the most written at once under one deadline.
const progressChunk = 16 << 10

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
