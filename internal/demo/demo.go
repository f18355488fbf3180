// Package demo runs the whole product on one machine with nothing to set up: a throwaway
// Dendrite homeserver, the bot, and a synthetic caller that places a 1:1 call in an
// encrypted room. It prints where the recording went.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/bot"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Options of the demo.
type Options struct {
	// Duration of the call.
	Duration time.Duration
	// RecordingsDir receives the call folder.
	RecordingsDir string
	// Encrypted makes the room end-to-end encrypted.
	Encrypted bool
	Version   string
	Out       io.Writer
	Logger    zerolog.Logger
}

// Run runs the demo and returns the call folder.
func Run(ctx context.Context, o Options) (string, error) {
	say := func(format string, a ...any) { fmt.Fprintf(o.Out, format+"\n", a...) }
	work, err := os.MkdirTemp("", "matrix-recorder-demo-")
	if err != nil {
		return "", fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(work)

	say("Starting a throwaway Matrix homeserver (Dendrite). The first run builds it from source, which takes a few minutes...")
	hs, err := devhs.Start(ctx, devhs.Options{Dir: filepath.Join(work, "homeserver"), Logger: &o.Logger})
	if err != nil {
		return "", fmt.Errorf("start homeserver: %w", err)
	}
	defer hs.Stop()
	say("Homeserver running at %s", hs.URL())

	const botPassword = "demo-recorder-password"
	botAcc, err := hs.Register(ctx, "recorder", botPassword)
	if err != nil {
		return "", fmt.Errorf("register the bot: %w", err)
	}
	alice, err := hs.Register(ctx, "alice", "demo-alice-password")
	if err != nil {
		return "", fmt.Errorf("register the caller: %w", err)
	}

	cfg := config.Default()
	cfg.Matrix.Homeserver = hs.URL()
	cfg.Matrix.UserID = botAcc.UserID
	cfg.Matrix.Password = botPassword
	cfg.DataDir = filepath.Join(work, "bot-data")
	cfg.Recordings.Dir = o.RecordingsDir
	cfg.WebRTC.IncludeLoopback = true
	cfg.WebRTC.UseHomeserverTURN = false
	// The demo's 1:1 call needs no cross-signing (that is for Element Call's media keys),
	// and its recovery key would only be noise here.
	cfg.Matrix.CrossSigning = false
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	b, err := bot.New(ctx, cfg, bot.Options{Version: o.Version, Logger: o.Logger})
	if err != nil {
		return "", fmt.Errorf("start the bot: %w", err)
	}
	botCtx, stopBot := context.WithCancel(ctx)
	botDone := make(chan error, 1)
	go func() { botDone <- b.Run(botCtx, 30*time.Second) }()
	defer func() {
		stopBot()
		<-botDone
	}()
	select {
	case <-b.Ready():
	case err := <-botDone:
		return "", fmt.Errorf("bot stopped: %w", err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	say("Bot %s is online.", b.UserID())

	c, err := caller.New(ctx, caller.Options{
		Homeserver: hs.URL(), UserID: alice.UserID, AccessToken: alice.AccessToken, DeviceID: alice.DeviceID,
		DataDir: work, Logger: o.Logger,
	})
	if err != nil {
		return "", fmt.Errorf("start the caller: %w", err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	room, err := c.CreateDM(wctx, id.UserID(botAcc.UserID), o.Encrypted)
	if err != nil {
		return "", fmt.Errorf("create the room: %w", err)
	}
	kind := "a plain"
	if o.Encrypted {
		kind = "an encrypted"
	}
	say("%s invited the bot into %s room; the bot joined.", alice.UserID, kind)

	start := time.Now()
	call, err := c.Call(wctx, room, caller.CallOptions{Audio: testmedia.Tone440, Video: testmedia.VP8})
	if err != nil {
		return "", fmt.Errorf("place the call: %w", err)
	}
	if err := call.WaitConnected(wctx); err != nil {
		return "", err
	}
	say("Call connected: sending a 440 Hz tone and a test pattern for %s...", o.Duration)
	select {
	case <-time.After(o.Duration):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if err := call.Hangup(wctx); err != nil {
		return "", fmt.Errorf("hang up: %w", err)
	}
	n, err := c.WaitNotice(wctx, room, start, func(body string) bool { return strings.Contains(body, "Recording saved") })
	if err != nil {
		return "", err
	}
	say("\nThe bot said in the room:\n  %s\n", strings.ReplaceAll(n.Body, "\n", "\n  "))
	// The files, with their links, are in the summary's thread.
	files, err := c.WaitNotice(wctx, room, start, func(body string) bool { return strings.HasPrefix(body, "Files of recording") })
	if err != nil {
		return "", err
	}
	say("And in its thread:\n  %s\n", strings.ReplaceAll(files.Body, "\n", "\n  "))

	folder, err := latestFolder(o.RecordingsDir, start)
	if err != nil {
		return "", err
	}
	m, err := recorder.ReadManifest(folder)
	if err != nil {
		return "", err
	}
	say("Recording folder: %s", folder)
	for _, t := range m.Tracks {
		say("  %-60s %s %s, %d ms from %d ms", t.File, t.Kind, t.Codec, t.DurationMs, t.StartOffsetMs)
	}
	say("  %s", recorder.ManifestFile)
	return folder, nil
}

func latestFolder(dir string, after time.Time) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("list recordings: %w", err)
	}
	var best string
	var bestTime time.Time
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !e.IsDir() || info.ModTime().Before(after.Add(-time.Second)) {
			continue
		}
		if info.ModTime().After(bestTime) {
			best, bestTime = e.Name(), info.ModTime()
		}
	}
	if best == "" {
		return "", errors.New("no recording folder was written")
	}
	return filepath.Join(dir, best), nil
}
