package livekit

import (
	"github.com/go-logr/logr"
	"github.com/go-logr/zerologr"
	protologger "github.com/livekit/protocol/logger"
	"github.com/rs/zerolog"
)

// lkLogger routes server-sdk-go's logs into zerolog through zerologr, one level lower
// than the SDK's own (it logs routine events as info and warnings): info and warnings
// (logr V(0)) become debug, debug (V(1)) becomes trace, errors become warnings.
//
// zerologr maps V(n) to zerolog level 1-n (V(0) info, V(1) debug, V(2) trace): the
// logger is one V deeper than the SDK asks, and demoted turns its errors into
// warnings.
func lkLogger(log zerolog.Logger) protologger.Logger {
	return protologger.LogRLogger(logr.New(demoted{zerologr.NewLogSink(&log)}).V(1))
}

// demoted is a zerologr sink whose errors are logged as warnings (zerolog level 2: V(-1)).
type demoted struct{ logr.LogSink }

func (d demoted) Error(err error, msg string, kv ...any) {
	d.LogSink.Info(-1, msg, append(kv, "error", err)...)
}

func (d demoted) WithValues(kv ...any) logr.LogSink { return demoted{d.LogSink.WithValues(kv...)} }
func (d demoted) WithName(name string) logr.LogSink { return demoted{d.LogSink.WithName(name)} }
