package recorder

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// sender simulates one participant: its own NTP clock (off from ours by clockOff), a
// one-way network delay, and extra delay per packet (jitter, bursts).
type sender struct {
	clockOff time.Duration
	delay    time.Duration
}

// stream sends frames whose first one is sent at sendStart; extra gives each packet's extra
// delay by its send time. Every srEvery it sends an RTCP sender report (through tr, which
// the events call when they arrive).
func (snd sender) stream(t testing.TB, s *rtpStream, frames []testmedia.Frame, sendStart time.Time, d time.Duration,
	extra func(send time.Time) time.Duration, tr **Track, srEvery time.Duration,
) []event {
	evs := s.media(t, frames, sendStart, 0, d, nil)
	for i := range evs {
		send := evs[i].at
		evs[i].at = send.Add(snd.delay)
		if extra != nil {
			evs[i].at = evs[i].at.Add(extra(send))
		}
	}
	if srEvery > 0 {
		for st := srEvery / 2; st < d; st += srEvery {
			send := sendStart.Add(st)
			ntp := toNTP(send.Add(-snd.clockOff))
			rtpTS := s.ts0 + uint32(int64(st)*int64(s.rate)/int64(time.Second))
			arrival := send.Add(snd.delay)
			if extra != nil {
				arrival = arrival.Add(extra(send))
			}
			evs = append(evs, event{at: arrival, fn: func() { (*tr).onSenderReport(SenderReport{NTPTime: ntp, RTPTime: rtpTS, Arrival: arrival}) }})
		}
	}
	return evs
}

// TestTimelineOneSender: audio and video of one sender land on the call's timeline where
// they were sent plus the least network delay, whether or not sender reports arrive, even
// when the first video packets come in a late burst and the first report is delayed.
func TestTimelineOneSender(t *testing.T) {
	for _, withSR := range []bool{false, true} {
		name := "arrival only"
		if withSR {
			name = "sender reports"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Options{})
			alice := sender{clockOff: 3 * time.Hour, delay: 30 * time.Millisecond}
			srEvery := time.Duration(0)
			if withSR {
				srEvery = time.Second
			}
			audioSend := base.Add(970 * time.Millisecond)
			videoSend := base.Add(1170 * time.Millisecond)
			burstEnd := base.Add(1600 * time.Millisecond)
			// The first report and the first 400 ms of video wait in a queue.
			late := func(send time.Time) time.Duration {
				if send.Before(burstEnd) {
					return burstEnd.Sub(send)
				}
				return 0
			}
			var audio, video *Track
			audio = h.add(opusInfo())
			h.runOn(audio, alice.stream(t, opusStream(), loadFrames(t, testmedia.Tone440), audioSend, 6*time.Second, late, &audio, srEvery))
			video = h.add(vp8Info())
			h.runOn(video, alice.stream(t, vp8Stream(), loadFrames(t, testmedia.VP8), videoSend, 6*time.Second, late, &video, srEvery))
			m := h.close()
			a := filesOf(m, audio.lid)
			v := filesOf(m, video.lid)
			if len(a) != 1 || len(v) != 1 {
				t.Fatalf("files: %+v", m.Tracks)
			}
			// Sent at 970 and 1170 ms, 30 ms on the way at best.
			if a[0].StartOffsetMs != 1000 || v[0].StartOffsetMs != 1200 {
				t.Errorf("audio at %d ms, video at %d ms; want 1000 and 1200", a[0].StartOffsetMs, v[0].StartOffsetMs)
			}
		})
	}
}

// TestTimelineTwoSenders: two participants with different clocks, delays, jitter and
// late first packets. A moment both sent at the same time lands at the same place on the
// timeline up to the difference of their least network delays (here 15 ms).
func TestTimelineTwoSenders(t *testing.T) {
	h := newHarness(t, Options{})
	r := rand.New(rand.NewPCG(1, 2))
	jitter := func(max time.Duration) func(time.Time) time.Duration {
		return func(send time.Time) time.Duration {
			if send.Before(base.Add(1500 * time.Millisecond)) {
				return 300 * time.Millisecond // a slow start
			}
			if r.IntN(10) == 0 {
				return 0 // some packets get through at the least delay
			}
			return time.Duration(r.Int64N(int64(max)))
		}
	}
	alice := sender{clockOff: 3 * time.Hour, delay: 30 * time.Millisecond}
	bob := sender{clockOff: -17 * time.Minute, delay: 45 * time.Millisecond}
	aliceInfo := opusInfo()
	bobInfo := opusInfo()
	bobInfo.UserID, bobInfo.ClockDomain = "@bob:example.org", "bob"
	aStart, bStart := base.Add(700*time.Millisecond), base.Add(1300*time.Millisecond)
	var at, bt *Track
	at = h.add(aliceInfo)
	h.runOn(at, alice.stream(t, opusStream(), loadFrames(t, testmedia.Tone440), aStart, 8*time.Second, jitter(80*time.Millisecond), &at, time.Second))
	bt = h.add(bobInfo)
	h.runOn(bt, bob.stream(t, opusStream(), loadFrames(t, testmedia.Tone660), bStart, 8*time.Second, jitter(120*time.Millisecond), &bt, time.Second))
	m := h.close()
	a, b := filesOf(m, at.lid), filesOf(m, bt.lid)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("files: %+v", m.Tracks)
	}
	// Both "click" at base+5 s: Alice's sample 4.3 s into her stream, Bob's 3.7 s into his.
	// Bob's first packets came after later ones and were too late to keep: his file starts
	// that much later into his stream (and the offset says so).
	skippedB := 8*time.Second - ms(b[0].DurationMs)
	clickA := ms(a[0].StartOffsetMs) + 4300*time.Millisecond
	clickB := ms(b[0].StartOffsetMs) + 3700*time.Millisecond - skippedB
	if d := clickB - clickA; d < 10*time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("clicks at %v and %v on the timeline, %v apart; want the 15 ms delay difference", clickA, clickB, d)
	}
	if clickA != 5030*time.Millisecond {
		t.Errorf("Alice's click at %v, want 5.03 s (sent at 5 s, 30 ms on the way)", clickA)
	}
}

// TestClockDrift: a sender whose sound card runs 200 ppm fast (its RTP clock outruns
// ours), with network jitter, is measured and reported in the manifest; an exact one
// reports about zero; a short file reports nothing.
func TestClockDrift(t *testing.T) {
	for _, c := range []struct {
		name string
		ppm  float64
		d    time.Duration
		want bool
	}{
		{"fast", 200, 5 * time.Minute, true},
		{"slow", -50, 5 * time.Minute, true},
		{"exact", 0, 5 * time.Minute, true},
		{"short", 200, time.Minute, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			evs := opusStream().media(t, loadFrames(t, testmedia.Tone440), base, 0, c.d, nil)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range evs {
				mt := evs[i].at.Sub(base)
				// Sent in real time by the sender's clock, which counts ppm too many samples.
				sent := mt - time.Duration(float64(mt)*c.ppm/1e6)
				evs[i].at = base.Add(sent + time.Duration(r.Int64N(int64(40*time.Millisecond))))
			}
			h.run(opusInfo(), evs)
			m := h.close()
			e := filesOf(m, "")[0]
			if !c.want {
				if e.ClockDriftPPM != nil {
					t.Errorf("drift %v reported for a %v file", *e.ClockDriftPPM, c.d)
				}
				return
			}
			if e.ClockDriftPPM == nil || *e.ClockDriftPPM < c.ppm-5 || *e.ClockDriftPPM > c.ppm+5 {
				t.Errorf("drift %v, want %v ppm", e.ClockDriftPPM, c.ppm)
			} else {
				t.Logf("measured %v ppm", *e.ClockDriftPPM)
			}
		})
	}
}

// A participant's join time moves earlier when a backend learns a better one (a mesh device
// whose invite came before its member event), never later.
func TestParticipantJoinTimeTakesTheEarliest(t *testing.T) {
	h := newHarness(t, Options{})
	h.sess.AddParticipant("@bob:example.org", "DEV", "", base.Add(5*time.Second))
	h.sess.AddParticipant("@bob:example.org", "DEV", "Bob", base.Add(4600*time.Millisecond))
	h.sess.AddParticipant("@bob:example.org", "DEV", "", base.Add(9*time.Second))
	m := h.close()
	if len(m.Participants) != 1 {
		t.Fatalf("participants: %+v", m.Participants)
	}
	p := m.Participants[0]
	if !p.JoinedAt.Equal(base.Add(4600*time.Millisecond)) || p.DisplayName != "Bob" {
		t.Errorf("participant: %+v, want joined at base+4.6s as Bob", p)
	}
}
