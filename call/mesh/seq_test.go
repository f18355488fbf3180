package mesh

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func seqp(n int64) *int64 { return &n }

func TestReorderDeliversInSeqOrder(t *testing.T) {
	r := newReorder[string]()
	now := time.Now()
	var got []string
	push := func(seq int64, msg string) {
		out, dropped := r.Push("o", "c", seqp(seq), msg, now)
		if dropped {
			t.Fatalf("seq %d dropped", seq)
		}
		got = append(got, out...)
	}
	push(2, "candidates-2")
	push(1, "candidates-1")
	if len(got) != 0 || !r.Waiting() {
		t.Fatalf("delivered %v before seq 0", got)
	}
	push(0, "invite")
	push(3, "hangup")
	want := []string{"invite", "candidates-1", "candidates-2", "hangup"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if r.Waiting() {
		t.Error("still waiting after the gap closed")
	}
}

func TestReorderCallsAreIndependent(t *testing.T) {
	r := newReorder[string]()
	now := time.Now()
	if out, _ := r.Push("o", "a", seqp(1), "a1", now); len(out) != 0 {
		t.Fatalf("a1 delivered early: %v", out)
	}
	if out, _ := r.Push("o", "b", seqp(0), "b0", now); !reflect.DeepEqual(out, []string{"b0"}) {
		t.Fatalf("b0: %v", out)
	}
	if out, _ := r.Push("o", "a", seqp(0), "a0", now); !reflect.DeepEqual(out, []string{"a0", "a1"}) {
		t.Fatalf("a: %v", out)
	}
}

func TestReorderDropsDuplicatesAndNonsense(t *testing.T) {
	r := newReorder[string]()
	now := time.Now()
	r.Push("o", "c", seqp(0), "x", now)
	if out, dropped := r.Push("o", "c", seqp(0), "again", now); !dropped || len(out) != 0 {
		t.Errorf("duplicate seq 0: out %v dropped %v", out, dropped)
	}
	r.Push("o", "c", seqp(5), "five", now)
	if _, dropped := r.Push("o", "c", seqp(5), "five again", now); !dropped {
		t.Error("duplicate held-back seq not dropped")
	}
	for _, s := range []int64{-1, maxSeq + 1} {
		if _, dropped := r.Push("o", "c", seqp(s), "bad", now); !dropped {
			t.Errorf("seq %d not dropped", s)
		}
	}
	// No seq: delivered at once (js-sdk does the same).
	if out, _ := r.Push("o", "c", nil, "noseq", now); !reflect.DeepEqual(out, []string{"noseq"}) {
		t.Errorf("message without seq: %v", out)
	}
}

func TestReorderBoundsHeldBackMessages(t *testing.T) {
	r := newReorder[int]()
	now := time.Now()
	dropped := 0
	for i := int64(1); i <= maxPendingPerCall+10; i++ {
		if _, d := r.Push("o", "c", seqp(i), int(i), now); d {
			dropped++
		}
	}
	if dropped != 10 {
		t.Errorf("dropped %d, want 10 beyond the bound", dropped)
	}
	for i := 0; i < maxSeqCalls*2; i++ {
		r.Push("o", string(rune('A'+i%60))+time.Duration(i).String(), seqp(3), i, now)
	}
	if len(r.calls) > maxSeqCalls {
		t.Errorf("tracking %d calls, bound is %d", len(r.calls), maxSeqCalls)
	}
}

// A seq that never arrives stalls matrix-js-sdk forever; the recorder goes on after a while.
func TestReorderExpireSkipsAGap(t *testing.T) {
	r := newReorder[string]()
	t0 := time.Now()
	r.Push("o", "c", seqp(0), "invite", t0)
	r.Push("o", "c", seqp(2), "two", t0)
	r.Push("o", "c", seqp(3), "three", t0)
	if out := r.Expire(t0.Add(seqGapTimeout - time.Millisecond)); len(out) != 0 {
		t.Fatalf("released before the timeout: %v", out)
	}
	out := r.Expire(t0.Add(seqGapTimeout))
	if !reflect.DeepEqual(out, []string{"two", "three"}) {
		t.Fatalf("released %v", out)
	}
	// The late seq 1 is now a duplicate; seq 4 flows.
	if _, dropped := r.Push("o", "c", seqp(1), "one", t0); !dropped {
		t.Error("late seq 1 delivered after the gap was skipped")
	}
	if got, _ := r.Push("o", "c", seqp(4), "four", t0); !reflect.DeepEqual(got, []string{"four"}) {
		t.Errorf("seq 4: %v", got)
	}
}

// One sender cannot fill the reorder buffer: calls are bounded per owner, a full buffer
// forgets idle calls only, and a device that leaves is forgotten.
func TestReorderBoundsPerOwner(t *testing.T) {
	r := newReorder[int]()
	now := time.Now()
	for i := 0; i < maxSeqCallsPerOwner; i++ {
		if _, dropped := r.Push("@mallory:hs", fmt.Sprintf("@mallory:hs|D|c%d", i), seqp(1), i, now); dropped {
			t.Fatalf("call %d dropped", i)
		}
	}
	if _, dropped := r.Push("@mallory:hs", "@mallory:hs|D|one-more", seqp(1), 0, now); !dropped {
		t.Fatal("an owner's 17th call was tracked")
	}
	if out, dropped := r.Push("@alice:hs", "@alice:hs|A|c", seqp(0), 7, now); dropped || len(out) != 1 {
		t.Fatal("another sender's call was refused")
	}
	r.Forget("@mallory:hs|D|")
	if r.Len() != 1 {
		t.Fatalf("%d calls after forgetting mallory's device, want alice's", r.Len())
	}
	if _, dropped := r.Push("@mallory:hs", "@mallory:hs|D|again", seqp(1), 0, now); dropped {
		t.Fatal("a forgotten owner's count was not released")
	}
	// Full of calls that all wait: a new one is refused rather than evicting them.
	full := newReorder[int]()
	for i := 0; i < maxSeqCalls; i++ {
		full.Push(fmt.Sprintf("u%d", i), fmt.Sprintf("k%d", i), seqp(2), i, now)
	}
	if _, dropped := full.Push("late", "late", seqp(0), 0, now); !dropped || full.Len() != maxSeqCalls {
		t.Fatal("a busy call was evicted for a new one")
	}
}
