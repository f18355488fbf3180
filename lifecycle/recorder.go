package lifecycle

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// NewRecorder creates the recorder of the configured recordings with the lifecycle's
// hooks, repairs the folders a crash left, and takes over the recordings the last run
// left unfinished (Recover). version names the recorder in every manifest.
func (lc *Lifecycle) NewRecorder(ctx context.Context, version string, log zerolog.Logger) (*recorder.Recorder, error) {
	cfg := lc.cfg
	rec, err := recorder.New(recorder.Options{
		Dir:           cfg.Recordings.Dir,
		FlushInterval: cfg.Recordings.FlushInterval.D(),
		Fsync:         cfg.Recordings.Fsync,
		GapPolicy:     string(cfg.Recordings.GapPolicy),
		SplitAfter:    cfg.Recordings.SplitAfter.D(),
		AudioJitter:   cfg.Recordings.AudioJitter.D(),
		VideoJitter:   cfg.Recordings.VideoJitter.D(),
		MaxTracks:     cfg.Calls.MaxTracks,
		Version:       "matrix-recorder " + version,
		Hooks:         lc.Hooks(),
		DirMode:       cfg.Recordings.DirMode.Perm(),
		FileMode:      cfg.Recordings.FileMode.Perm(),
	}, log.With().Str("component", "recorder").Logger())
	if err != nil {
		return nil, err
	}
	reports, err := recorder.RecoverInterrupted(rec.Dir(), log)
	if err != nil {
		log.Warn().Err(err).Msg("Could not check for recordings left by a crash")
	} else if len(reports) > 0 {
		log.Warn().Int("calls", len(reports)).Msg("Repaired recordings that a crash interrupted")
	}
	lc.Recover(ctx, reports)
	return rec, nil
}
