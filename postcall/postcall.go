// Package postcall is what happens after a call: the summary picture posted in the room,
// exports (aligned tracks, a mixdown, a zip) on request or automatically, and the
// transcription hook with its merged transcript. It works on finished call folders only,
// in its own bounded worker pools, so it can never endanger a recording; every failure is
// reported in the room and logged, never passed on.
package postcall

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/postcall/picture"
	"github.com/matrix-recorder/matrix-recorder/postcall/transcript"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Room is what the after-call work may do in a Matrix room; the bot implements it (and
// encrypts in encrypted rooms).
type Room interface {
	// Notice posts a notice and returns its event id ("" when it could not be sent).
	Notice(ctx context.Context, roomID, text string) string
	// Edit replaces the text of a notice posted before.
	Edit(ctx context.Context, roomID, eventID, text string)
	// SendFile uploads a file to the media repository and posts it.
	SendFile(ctx context.Context, roomID string, f File) error
	// DisplayNames returns the display names of the room's members (best effort).
	DisplayNames(ctx context.Context, roomID string) map[string]string
	// RoomName returns the room's name ("" if it has none).
	RoomName(ctx context.Context, roomID string) string
}

// File is a file to post.
type File struct {
	Name string
	MIME string
	Data []byte
	// Kind is "image", "audio" or "file".
	Kind          string
	Width, Height int
	Duration      time.Duration
}

// Config configures the after-call work.
type Config struct {
	// FFmpeg is the ffmpeg command (a path, or a name looked up in PATH each time;
	// empty: "ffmpeg").
	FFmpeg string
	// Workers run exports; MaxQueue jobs may wait for them.
	Workers  int
	MaxQueue int
	// Picture posts the summary picture when a call ends.
	Picture bool
	// PictureWidth in pixels.
	PictureWidth int
	// VoiceActivity is "auto" (decoded levels when ffmpeg is installed, else packet
	// sizes) or "packets".
	VoiceActivity string
	// AutoExport lists the exports made after every call.
	AutoExport []export.Kind
	// MixFormat is "opus" or "flac".
	MixFormat string
	// ExportTimeout bounds one export job.
	ExportTimeout time.Duration
	// UploadMaxBytes: exported files up to this size are also posted in the room (0: none).
	UploadMaxBytes int64
	// Transcript is the transcription hook (disabled when it has no command or URL).
	Transcript transcript.Hook
	// CommandPrefix is used in messages that name commands.
	CommandPrefix string
	// RecordingsDir holds the call folders the commands look for.
	RecordingsDir string
	// FolderOf, when set, resolves a recording id (of !recordings) in a room to its
	// call folder's name ("" when it names none).
	FolderOf func(ctx context.Context, roomID, ref string) string
	// LockManifest, when set, is held while a finished manifest is rewritten, so that
	// others who rewrite finished manifests (uploads) do not lose updates.
	LockManifest func() (unlock func())
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

func (c *Config) fill() {
	c.Workers = max(c.Workers, 1)
	if c.MaxQueue <= 0 {
		c.MaxQueue = 16
	}
	if c.ExportTimeout <= 0 {
		c.ExportTimeout = 2 * time.Hour
	}
	if c.MixFormat == "" {
		c.MixFormat = export.MixOpus
	}
	if c.CommandPrefix == "" {
		c.CommandPrefix = "!"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Manager runs the after-call work.
type Manager struct {
	cfg      Config
	room     Room
	log      zerolog.Logger
	renderer *picture.Renderer

	manifests manifests

	// ctx is cancelled on Close; heavy is cancelled first (exports, transcripts).
	ctx         context.Context
	cancel      context.CancelFunc
	heavy       context.Context
	cancelHeavy context.CancelFunc

	pictures    *pool
	exports     *pool
	transcripts *pool
}

// New creates the manager and starts its workers.
func New(cfg Config, room Room, log zerolog.Logger) (*Manager, error) {
	cfg.fill()
	r, err := picture.NewRenderer(cfg.PictureWidth)
	if err != nil {
		return nil, err
	}
	for _, k := range cfg.AutoExport {
		if _, ok := export.ParseKind(string(k)); !ok {
			return nil, fmt.Errorf("unknown export kind %q", k)
		}
	}
	m := &Manager{cfg: cfg, room: room, log: log.With().Str("component", "postcall").Logger(), renderer: r}
	m.manifests.outer = cfg.LockManifest
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.heavy, m.cancelHeavy = context.WithCancel(m.ctx)
	m.pictures = newPool(1, 64, m.log)
	m.exports = newPool(cfg.Workers, cfg.MaxQueue, m.log)
	m.transcripts = newPool(1, 64, m.log)
	return m, nil
}

// ErrBusy is returned when a queue is full.
var ErrBusy = errors.New("too many jobs are waiting")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("the recorder is shutting down")

// CallEnded starts the after-call work of a finished recording: the picture, the
// transcription hook, the automatic exports. It never blocks and never fails the caller.
func (m *Manager) CallEnded(roomID, folder string, man recorder.Manifest) {
	if folder == "" {
		return
	}
	log := m.log.With().Str("room_id", roomID).Str("folder", folderName(folder)).Logger()
	call := Call{Folder: folder, Manifest: &man}
	if m.cfg.Picture && len(man.Tracks) > 0 {
		if err := m.pictures.submit(func() { m.postPicture(m.ctx, roomID, call) }); err != nil {
			log.Warn().Err(err).Msg("Summary picture not queued")
		}
	}
	// Notices about work that could not be queued go out in the background: this runs
	// on a call's loop and must not wait for the homeserver.
	notice := func(text string) {
		go func() {
			ctx, cancel := roomCtx(m.ctx)
			defer cancel()
			m.room.Notice(ctx, roomID, text)
		}()
	}
	if m.cfg.Transcript.Enabled() && hasAudio(&man) {
		if err := m.transcripts.submit(func() { m.transcribe(m.heavy, roomID, call, true) }); err != nil {
			log.Warn().Err(err).Msg("Transcription not queued")
			notice("⚠️ The transcription hook was not run: " + err.Error() + ". The recording is not affected.")
		}
	}
	if len(m.cfg.AutoExport) > 0 && hasAudio(&man) {
		if err := m.Export(roomID, call, m.cfg.AutoExport); err != nil {
			log.Warn().Err(err).Msg("Automatic export not queued")
			notice("⚠️ The automatic export was not started: " + err.Error() + ". The recording is not affected.")
		}
	}
}

// Export queues an export of a finished call; its message in the room (posted in the
// background) shows the queue, then the progress, then the result. It returns at once.
func (m *Manager) Export(roomID string, call Call, kinds []export.Kind) error {
	st := &status{m: m, roomID: roomID, posted: make(chan struct{})}
	waiting := m.exports.waiting()
	err := m.exports.submit(func() {
		select {
		case <-st.posted:
		case <-time.After(roomTimeout):
		}
		m.runExport(m.heavy, roomID, call, kinds, st)
	})
	if err != nil {
		close(st.posted)
		return err
	}
	go func() {
		defer close(st.posted)
		st.set(m.ctx, exportStartText(call, kinds, waiting))
	}()
	return nil
}

// Transcribe queues the transcription of a finished call: the hook runs for tracks that
// have no WebVTT yet, then everything is merged and posted.
func (m *Manager) Transcribe(roomID string, call Call) error {
	return m.transcripts.submit(func() { m.transcribe(m.heavy, roomID, call, false) })
}

// Close stops taking work, stops exports and transcriptions, lets pictures finish
// within ctx, then stops everything and waits for the workers.
func (m *Manager) Close(ctx context.Context) error {
	m.pictures.close()
	m.exports.close()
	m.transcripts.close()
	m.cancelHeavy()
	done := make(chan struct{})
	go func() {
		m.pictures.wait()
		m.exports.wait()
		m.transcripts.wait()
		close(done)
	}()
	select {
	case <-done:
		m.cancel()
		return nil
	case <-ctx.Done():
		m.cancel()
		select {
		case <-done:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("after-call work did not stop in time")
		}
	}
}

// pool is a fixed number of workers with a bounded queue.
type pool struct {
	log    zerolog.Logger
	mu     sync.Mutex
	jobs   chan func()
	closed bool
	queued int
	wg     sync.WaitGroup
}

func newPool(workers, queue int, log zerolog.Logger) *pool {
	p := &pool{log: log, jobs: make(chan func(), queue)}
	for range workers {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

func (p *pool) work() {
	defer p.wg.Done()
	for job := range p.jobs {
		p.run(job)
		p.mu.Lock()
		p.queued--
		p.mu.Unlock()
	}
}

// run runs one job; a panic is logged, never passed on.
func (p *pool) run(job func()) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error().Any("panic", r).Str("stack", string(debug.Stack())).Msg("After-call job panicked")
		}
	}()
	job()
}

func (p *pool) submit(job func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	select {
	case p.jobs <- job:
		p.queued++
		return nil
	default:
		return ErrBusy
	}
}

// waiting is how many jobs are queued or running.
func (p *pool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.jobs)
	}
}

func (p *pool) wait() { p.wg.Wait() }

func hasAudio(m *recorder.Manifest) bool {
	for _, t := range m.Tracks {
		if t.Kind == "audio" {
			return true
		}
	}
	return false
}
