package export

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// zipReadme explains the archive to whoever opens it.
const zipReadme = `Aligned tracks of one call, made by matrix-recorder.

audio/   one file per person and track, decoded to FLAC and padded with silence so that
         every file starts at the call's zero and lasts as long as the call: drop them all
         at the start of a DAW session and they line up.
video/   the video files as recorded (not padded); offsets.txt says where each starts on
         the call's timeline.
labels.txt    the markers set during the call (Audacity: File > Import > Labels).
manifest.json the recording's manifest (who each file is, gaps, statistics).
`

// offsetEntry is one line of offsets.json.
type offsetEntry struct {
	File          string `json:"file"`
	From          string `json:"from,omitempty"`
	Track         string `json:"track"`
	UserID        string `json:"user_id"`
	DeviceID      string `json:"device_id,omitempty"`
	Source        string `json:"source,omitempty"`
	StartOffsetMs int64  `json:"start_offset_ms"`
	DurationMs    int64  `json:"duration_ms"`
	Aligned       bool   `json:"aligned"`
}

// zip packs the aligned FLAC tracks (from made), the video files as recorded, the offsets,
// the labels and the manifest into one archive.
func (p *plan) zip(ctx context.Context, made []recorder.Export) (recorder.Export, error) {
	base := filepath.Base(p.req.Folder)
	if !SafeName(base) {
		base = "call"
	}
	name := base + "-aligned.zip"
	final := filepath.Join(p.dir, name)
	tmp := filepath.Join(p.dir, "."+name+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return recorder.Export{}, fmt.Errorf("create %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	zw := zip.NewWriter(f)
	var offsets []offsetEntry
	var txt strings.Builder
	txt.WriteString("file\tstart_offset_ms\tstart\tuser\tsource\n")
	add := func(zipName, path string, method uint16) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: base + "/" + zipName, Method: method, Modified: fi.ModTime()}
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, src)
		return err
	}
	addBytes := func(zipName string, data []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: base + "/" + zipName, Method: zip.Deflate, Modified: p.now})
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	tracks := map[string]audioTrack{}
	for _, t := range p.audio {
		tracks[t.id] = t
	}
	for _, e := range made {
		if e.Kind != "track" || e.Format != "flac" {
			continue
		}
		t := tracks[e.Track]
		zn := "audio/" + filepath.Base(e.File)
		if err := add(zn, filepath.Join(p.req.Folder, e.File), zip.Store); err != nil {
			return recorder.Export{}, fmt.Errorf("zip %s: %w", e.File, err)
		}
		from := make([]string, 0, len(t.parts))
		for _, pt := range t.parts {
			from = append(from, filepath.Base(pt.path))
		}
		offsets = append(offsets, offsetEntry{File: zn, From: strings.Join(from, " "), Track: e.Track, UserID: t.user, Source: t.source, DurationMs: p.duration.Milliseconds(), Aligned: true})
		fmt.Fprintf(&txt, "%s\t0\t0:00:00.000\t%s\t%s\n", zn, t.user, t.source)
	}
	for _, v := range p.video {
		zn := "video/" + v.File
		if err := add(zn, filepath.Join(p.req.Folder, v.File), zip.Store); err != nil {
			return recorder.Export{}, fmt.Errorf("zip %s: %w", v.File, err)
		}
		offsets = append(offsets, offsetEntry{File: zn, Track: v.Track, UserID: v.UserID, DeviceID: v.DeviceID, Source: v.Source, StartOffsetMs: v.StartOffsetMs, DurationMs: v.DurationMs})
		fmt.Fprintf(&txt, "%s\t%d\t%s\t%s\t%s\n", zn, v.StartOffsetMs, clockMs(v.StartOffsetMs), v.UserID, v.Source)
	}
	js, _ := json.MarshalIndent(offsets, "", "  ")
	for _, x := range []struct {
		name string
		data []byte
	}{{"offsets.json", append(js, '\n')}, {"offsets.txt", []byte(txt.String())}, {"README.txt", []byte(zipReadme)}} {
		if err := addBytes(x.name, x.data); err != nil {
			return recorder.Export{}, fmt.Errorf("zip %s: %w", x.name, err)
		}
	}
	if err := add(LabelsFile, filepath.Join(p.dir, LabelsFile), zip.Deflate); err != nil {
		return recorder.Export{}, fmt.Errorf("zip %s: %w", LabelsFile, err)
	}
	mj, err := json.MarshalIndent(p.req.Manifest, "", "  ")
	if err != nil {
		return recorder.Export{}, fmt.Errorf("zip the manifest: %w", err)
	}
	if err := addBytes(recorder.ManifestFile, append(mj, '\n')); err != nil {
		return recorder.Export{}, fmt.Errorf("zip the manifest: %w", err)
	}
	if err := zw.Close(); err != nil {
		return recorder.Export{}, fmt.Errorf("finish %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return recorder.Export{}, fmt.Errorf("sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return recorder.Export{}, fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return recorder.Export{}, fmt.Errorf("rename %s: %w", name, err)
	}
	ok = true
	e, err := describe(p.req.Folder, filepath.Join(Dir, name), p.now)
	e.Kind, e.Format, e.DurationMs = "zip", "zip", p.duration.Milliseconds()
	return e, err
}

func clockMs(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	return fmt.Sprintf("%d:%02d:%02d.%03d", int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second), int(d%time.Second/time.Millisecond))
}
