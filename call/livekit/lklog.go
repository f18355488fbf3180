package livekit

import (
	"fmt"

	"github.com/go-logr/logr"
	protologger "github.com/livekit/protocol/logger"
	"github.com/rs/zerolog"
)

// lkLogger routes server-sdk-go's logs into zerolog, one level lower than the SDK's own
// (it logs routine events as info and warnings): info and warnings become debug, debug
// becomes trace, errors become warnings.
func lkLogger(log zerolog.Logger) protologger.Logger {
	return protologger.LogRLogger(logr.New(&zerologSink{log: log}))
}

type zerologSink struct {
	log  zerolog.Logger
	name string
}

func (s *zerologSink) Init(logr.RuntimeInfo) {}

func (s *zerologSink) Enabled(level int) bool {
	if level > 0 {
		return s.log.GetLevel() <= zerolog.TraceLevel
	}
	return s.log.GetLevel() <= zerolog.DebugLevel
}

func (s *zerologSink) Info(level int, msg string, kv ...any) {
	ev := s.log.Debug()
	if level > 0 {
		ev = s.log.Trace()
	}
	s.fields(ev, kv).Msg(msg)
}

func (s *zerologSink) Error(err error, msg string, kv ...any) {
	s.fields(s.log.Warn().Err(err), kv).Msg(msg)
}

func (s *zerologSink) fields(ev *zerolog.Event, kv []any) *zerolog.Event {
	if s.name != "" {
		ev = ev.Str("lk", s.name)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		ev = ev.Str(fmt.Sprint(kv[i]), fmt.Sprint(kv[i+1]))
	}
	return ev
}

func (s *zerologSink) WithValues(kv ...any) logr.LogSink {
	c := s.log.With()
	for i := 0; i+1 < len(kv); i += 2 {
		c = c.Str(fmt.Sprint(kv[i]), fmt.Sprint(kv[i+1]))
	}
	return &zerologSink{log: c.Logger(), name: s.name}
}

func (s *zerologSink) WithName(name string) logr.LogSink {
	n := name
	if s.name != "" {
		n = s.name + "." + name
	}
	return &zerologSink{log: s.log, name: n}
}
