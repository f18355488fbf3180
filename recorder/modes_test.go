package recorder

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// Call folders, media files and manifests are private by default (0700/0600) and take
// the modes an operator configures, through every rewrite of the manifest.
func TestFileModes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dir, file os.FileMode
		wantDir   os.FileMode
		wantFile  os.FileMode
	}{
		{"default", 0, 0, 0o700, 0o600},
		{"group", 0o750, 0o640, 0o750, 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "recordings")
			h := newHarness(t, Options{Dir: root, DirMode: tc.dir, FileMode: tc.file})
			h.run(opusInfo(), opusStream().media(t, loadFrames(t, testmedia.Tone440), base, 0, time.Second, nil))
			m := h.close()
			mode := func(p string) os.FileMode {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				return fi.Mode().Perm()
			}
			if got := mode(root); got != tc.wantDir {
				t.Errorf("recordings dir %04o, want %04o", got, tc.wantDir)
			}
			if got := mode(h.sess.Folder()); got != tc.wantDir {
				t.Errorf("call folder %04o, want %04o", got, tc.wantDir)
			}
			if got := mode(filepath.Join(h.sess.Folder(), ManifestFile)); got != tc.wantFile {
				t.Errorf("manifest %04o, want %04o", got, tc.wantFile)
			}
			if len(m.Tracks) != 1 {
				t.Fatalf("tracks: %+v", m.Tracks)
			}
			if got := mode(h.path(m.Tracks[0].File)); got != tc.wantFile {
				t.Errorf("media file %04o, want %04o", got, tc.wantFile)
			}
			// A rewrite from outside the session (an upload noted after the call) keeps the mode.
			if err := SetUpload(h.sess.Folder(), m.Tracks[0].File, Upload{URL: "s3://b/k"}); err != nil {
				t.Fatal(err)
			}
			if got := mode(filepath.Join(h.sess.Folder(), ManifestFile)); got != tc.wantFile {
				t.Errorf("manifest after SetUpload %04o, want %04o", got, tc.wantFile)
			}
		})
	}
}
