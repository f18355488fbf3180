package mkvwriter

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

// keyEverySecond returns n key frames a second apart: each starts a cluster.
func keyEverySecond(t testing.TB, n int) []media.Frame {
	t.Helper()
	key := readIVF(t, "vp8_320x240.ivf", media.CodecVP8)[0]
	if !key.Keyframe {
		t.Fatal("the fixture's first frame is not a key frame")
	}
	frames := make([]media.Frame, n)
	for i := range frames {
		frames[i] = media.Frame{Data: key.Data, PTS: time.Duration(i) * time.Second, Keyframe: true}
	}
	return frames
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestWriterMemoryFlatOverClusters: what a writer holds does not grow with the clusters it
// wrote. It kept the offset of every cluster (8 bytes) and a cue for each (24 bytes) until
// Close, which grew with the length of the recording (the soak of issue 16 saw it).
func TestWriterMemoryFlatOverClusters(t *testing.T) {
	const early, late = 2000, 40000
	key := keyEverySecond(t, 1)[0] // frames made as they go: a slice of them would be garbage by the end
	w, err := NewWith(&discard{}, VP8, media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	var atEarly int64
	for i := range late {
		if i == early {
			atEarly = heapInUse()
		}
		key.PTS = time.Duration(i) * time.Second
		if err := w.WriteFrame(key); err != nil {
			t.Fatal(err)
		}
	}
	atLate := heapInUse()
	runtime.KeepAlive(w)
	// The old index held 32 bytes a cluster: 1.2 MB more at the end.
	if grew := atLate - atEarly; grew > 64<<10 {
		t.Errorf("the writer's heap grew by %d bytes from %d to %d clusters", grew, early, late)
	}
	if n := len(w.mux.cues.points); n > maxCues || n < maxCues/2 {
		t.Errorf("%d cues after %d key frame clusters, want between %d and %d", n, late, maxCues/2, maxCues)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterSizesWhileRecording: every cluster but the one being written has its size in
// the file before Close, and the file is whole at that moment.
func TestClusterSizesWhileRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open.webm")
	w, err := New(path, VP8, media.TrackParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	frames := keyEverySecond(t, 5)
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	file, err := mkvscan.Scan(f, st.Size(), mkvscan.Visitor{Cluster: func(c mkvscan.Cluster) error {
		sizes = append(sizes, c.Size)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if file.Torn || file.Blocks != len(frames) || len(sizes) != len(frames) {
		t.Fatalf("open file: torn %v, %d blocks, %d clusters; want %d whole", file.Torn, file.Blocks, len(sizes), len(frames))
	}
	for i, s := range sizes[:len(sizes)-1] {
		if s == mkvscan.UnknownSize {
			t.Errorf("cluster %d of %d has no size while the next is written", i, len(sizes))
		}
	}
	if last := sizes[len(sizes)-1]; last != mkvscan.UnknownSize {
		t.Errorf("the cluster being written has size %d, want unknown", last)
	}
	ffmpegDecode(t, path)
}

// TestLongFileCues: an hour of clusters with a key frame each keeps at most maxCues cues,
// spread over the whole file, each pointing at its cluster; mkvinfo and ffprobe accept the
// file and ffprobe seeks into its end.
func TestLongFileCues(t *testing.T) {
	if testing.Short() {
		t.Skip("writes an hour of key frames")
	}
	const n = 3600
	frames := keyEverySecond(t, n)
	path := filepath.Join(t.TempDir(), "hour.webm")
	writeFrames(t, path, media.CodecVP8, media.TrackParams{}, frames)

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	clusterAt := map[int64]uint64{} // offset in the segment's data -> timestamp
	file, err := mkvscan.Scan(f, st.Size(), mkvscan.Visitor{Cluster: func(c mkvscan.Cluster) error {
		clusterAt[c.Offset] = c.Timestamp
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := mkvscan.ReadPayload(f, file.Cues, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var times []uint64
	_ = mkvscan.Children(payload, func(id uint32, point []byte) {
		var tm, pos uint64
		_ = mkvscan.Children(point, func(id uint32, data []byte) {
			switch id {
			case 0xB3: // CueTime
				tm, _ = mkvscan.Uint(data)
			case 0xB7: // CueTrackPositions
				_ = mkvscan.Children(data, func(id uint32, data []byte) {
					if id == 0xF1 { // CueClusterPosition
						pos, _ = mkvscan.Uint(data)
					}
				})
			}
		})
		if ts, ok := clusterAt[file.Segment.DataOffset+int64(pos)]; !ok || ts != tm {
			t.Errorf("cue at %d ms points at %d, which is no cluster of that time (%d, %v)", tm, pos, ts, ok)
		}
		times = append(times, tm)
	})
	if len(times) > maxCues || len(times) < maxCues/4 {
		t.Fatalf("%d cues for %d clusters, want at most %d and not far fewer", len(times), n, maxCues)
	}
	if times[0] != 0 || times[len(times)-1] < uint64(n-10)*1000 {
		t.Errorf("cues span %d..%d ms, want the whole hour", times[0], times[len(times)-1])
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i] - times[i-1]; gap == 0 || gap > 10_000 {
			t.Errorf("cues %d and %d are %d ms apart", i-1, i, gap)
		}
	}

	info := mkvinfo(t, path)
	if !strings.Contains(info, "Cues") {
		t.Errorf("mkvinfo shows no Cues")
	}
	if d := ffprobe(t, path).duration(t); d < (n-1)*time.Second {
		t.Errorf("ffprobe duration %v", d)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v", "-read_intervals", "3000%+#1",
		"-show_entries", "packet=pts_time", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe seeking: %v\n%s", err, out)
	}
	pts, err := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]), 64)
	if err != nil || pts < 2990 || pts > 3001 {
		t.Errorf("ffprobe seeking to 3000 s read a packet at %q (%v)", out, err)
	}
}

// TestCueIndexThin: thinning keeps the first and last cue, halves the count and raises
// the spacing.
func TestCueIndexThin(t *testing.T) {
	var c cueIndex
	for i := range 3 * maxCues {
		c.add(cuePoint{time: uint64(i) * 1000, cluster: int64(i)})
	}
	if n := len(c.points); n > maxCues || n < maxCues/2 {
		t.Fatalf("%d cues", n)
	}
	if c.points[0].time != 0 {
		t.Errorf("first cue at %d", c.points[0].time)
	}
	if last := c.points[len(c.points)-1].time; last < uint64(3*maxCues-4)*1000 {
		t.Errorf("last cue at %d, want near %d", last, (3*maxCues-1)*1000)
	}
	for i := 1; i < len(c.points); i++ {
		if c.points[i].time <= c.points[i-1].time {
			t.Fatalf("cues out of order at %d: %d then %d", i, c.points[i-1].time, c.points[i].time)
		}
	}
	c.add(cuePoint{time: 5}) // back in time: ignored
	if c.points[len(c.points)-1].time == 5 {
		t.Error("a cue back in time was kept")
	}
}
