package devegress

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/devlivekit"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// Egress v1.8.6 records an Opus and a VP8 track published through livekit-server v1.13.5
// to local files (track egress, no transcoding), and its handlers end with the service.
func TestIntegrationTrackEgress(t *testing.T) {
	testenv.RequireIntegration(t)
	mediacheck.Require(t, mediacheck.FFprobe)
	ctx := testenv.Context(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	redis, err := StartRedis(ctx, t.TempDir())
	if err != nil {
		testenv.SkipOrFail(t, "redis: %v", err)
	}
	t.Cleanup(func() { _ = redis.Stop() })
	lk, err := devlivekit.Start(ctx, devlivekit.Options{Dir: t.TempDir(), Redis: redis.Addr(), Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lk.Stop() })
	testenv.LogOnFailure(t, "livekit-server", func() string { return lk.LogTail(8000) })
	eg, err := Start(ctx, Options{Dir: t.TempDir(), LiveKitURL: lk.URL(), APIKey: lk.APIKey(), APISecret: lk.APISecret(), Redis: redis.Addr(), Logger: &log})
	if err != nil {
		testenv.SkipOrFail(t, "egress: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = eg.Stop()
		}
	})
	testenv.LogOnFailure(t, "egress", func() string { return eg.LogTail(16000) })

	tok, err := auth.NewAccessToken(lk.APIKey(), lk.APISecret()).SetIdentity("alice").
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: "room1"}).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	p, err := lkpeer.Direct(ctx, lk.URL(), tok, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Disconnect() })
	audio, err := p.Publish(ctx, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	if err != nil {
		t.Fatal(err)
	}
	video, err := p.Publish(ctx, testmedia.VP8, livekit.TrackSource_CAMERA)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ec := lksdk.NewEgressClient(lk.HTTPURL(), lk.APIKey(), lk.APISecret())
	var ids []string
	for _, tr := range []struct{ sid, name string }{{audio.SID(), "audio"}, {video.SID(), "video"}} {
		info, err := ec.StartTrackEgress(ctx, &livekit.TrackEgressRequest{RoomName: "room1", TrackId: tr.sid,
			Output: &livekit.TrackEgressRequest_File{File: &livekit.DirectFileOutput{Filepath: filepath.Join(out, tr.name), DisableManifest: true}}})
		if err != nil {
			t.Fatalf("start %s egress: %v", tr.name, err)
		}
		ids = append(ids, info.EgressId)
	}
	waitStatus(t, ec, ids, livekit.EgressStatus_EGRESS_ACTIVE)
	// List tells a room's egresses from another's.
	if l, err := eg.List(ctx, "room1"); err != nil || len(l) != 2 {
		t.Errorf("List(room1) = %d egresses, %v; want 2", len(l), err)
	}
	if l, err := eg.List(ctx, "room2"); err != nil || len(l) != 0 {
		t.Errorf("List(room2) = %d egresses, %v; want none", len(l), err)
	}
	time.Sleep(3 * time.Second)
	for _, id := range ids {
		if _, err := ec.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: id}); err != nil {
			t.Fatal(err)
		}
	}
	infos := waitStatus(t, ec, ids, livekit.EgressStatus_EGRESS_COMPLETE)
	for _, info := range infos {
		for _, f := range info.FileResults {
			st, err := os.Stat(f.Location)
			if err != nil || st.Size() != f.Size || f.Size == 0 {
				t.Errorf("%s: stat %v, egress says %d bytes", f.Location, err, f.Size)
			}
			mi, err := mediacheck.Probe(ctx, f.Location)
			if err != nil {
				t.Errorf("ffprobe %s: %v", f.Location, err)
				continue
			}
			want := "opus"
			if filepath.Base(f.Location) == "video.webm" {
				want = "vp8"
			}
			if len(mi.Streams) != 1 || mi.Streams[0].CodecName != want {
				t.Errorf("%s: streams %+v, want one %s stream", f.Location, mi.Streams, want)
			}
		}
	}
	pid := eg.proc.Pid()
	if err := eg.Stop(); err != nil {
		t.Error(err)
	}
	stopped = true
	if kids := children(pid); len(kids) != 0 {
		t.Errorf("handler processes outlive the service: %v", kids)
	}
}

// waitStatus waits until every egress has the status (or fails on a terminal other one).
func waitStatus(t *testing.T, ec *lksdk.EgressClient, ids []string, want livekit.EgressStatus) []*livekit.EgressInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		var out []*livekit.EgressInfo
		for _, id := range ids {
			l, err := ec.ListEgress(ctx, &livekit.ListEgressRequest{EgressId: id})
			if err != nil || len(l.Items) != 1 {
				break
			}
			info := l.Items[0]
			if info.Status == want {
				out = append(out, info)
			} else if info.Status >= livekit.EgressStatus_EGRESS_COMPLETE {
				t.Fatalf("egress %s ended %s: %s", id, info.Status, info.Error)
			}
		}
		if len(out) == len(ids) {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("egresses did not reach %s", want)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
