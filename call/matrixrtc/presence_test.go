package matrixrtc

import (
	"testing"
	"time"
)

func TestPresence(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	a := Member{UserID: "@a:hs", DeviceID: "A"}
	b := Member{UserID: "@b:hs", DeviceID: "B"}
	p := NewPresence()
	joined, left := p.Update([]Member{b, a}, t0)
	if len(joined) != 2 || joined[0].Key() != a.Key() || len(left) != 0 {
		t.Fatalf("first update: joined %v left %v", joined, left)
	}
	// b renews its membership (a new event): still in, since the first time.
	b2 := b
	b2.CreatedTs = 5
	joined, left = p.Update([]Member{a, b2}, t0.Add(time.Minute))
	if len(joined) != 0 || len(left) != 0 {
		t.Fatalf("renewal: joined %v left %v", joined, left)
	}
	if since, ok := p.Since(b.Key()); !ok || !since.Equal(t0) {
		t.Fatalf("b in since %v %v", since, ok)
	}
	joined, left = p.Update([]Member{a}, t0.Add(2*time.Minute))
	if len(joined) != 0 || len(left) != 1 || left[0].CreatedTs != 5 {
		t.Fatalf("b left: joined %v left %v", joined, left)
	}
	if d := p.Devices(); len(d) != 1 || d[0] != a.Key() {
		t.Fatalf("devices %v", d)
	}
	if _, ok := p.Since(b.Key()); ok {
		t.Fatal("b still has a since")
	}
	// Back later: a new join, since then.
	p.Update([]Member{a, b}, t0.Add(3*time.Minute))
	if since, _ := p.Since(b.Key()); !since.Equal(t0.Add(3 * time.Minute)) {
		t.Fatalf("rejoin since %v", since)
	}
}
