package bot

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
)

// mautrix logs every request with its body: at debug level when it works, at error level
// when it fails. Bodies carry what must not reach a log: summaries with download links
// (their tokens and presigned signatures) in unencrypted rooms, secrets being stored. Its
// request lines are dropped (requestLogFilter) and logged again here without the body.

// mautrixRequestMessages are the messages of mautrix's request log lines.
var mautrixRequestMessages = map[string]bool{
	"Request completed": true, "Request failed": true, "Request canceled": true, "Request parsing failed": true,
}

// requestLogFilter drops mautrix's request log lines (they carry the request body).
type requestLogFilter struct{}

func (requestLogFilter) Run(e *zerolog.Event, _ zerolog.Level, msg string) {
	if mautrixRequestMessages[msg] {
		e.Discard()
	}
}

// quietRequestLog makes a client log its requests without their bodies: method, path,
// status and time, and the error.
func quietRequestLog(client *mautrix.Client, log zerolog.Logger) {
	client.Log = client.Log.Hook(requestLogFilter{})
	client.ResponseHook = func(req *http.Request, resp *http.Response, err error, d time.Duration) {
		var ev *zerolog.Event
		switch {
		case errors.Is(err, context.Canceled):
			ev = log.Debug()
		case err != nil && (resp == nil || resp.StatusCode >= 500):
			ev = log.Warn().Err(err)
		case err != nil:
			ev = log.Debug().Err(err) // 4xx: mostly "not found", handled by the caller
		default:
			ev = log.Trace()
		}
		ev = ev.Str("method", req.Method).Str("path", req.URL.Path).Dur("duration", d)
		if resp != nil {
			ev = ev.Int("status", resp.StatusCode)
		}
		ev.Msg("Homeserver request")
	}
}
