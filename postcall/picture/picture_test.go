package picture

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
	"time"
)

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
func span(a, b float64) Span      { return Span{sec(a), sec(b)} }

// fixture is a one-minute call: Alice speaks 5-15 s and 20-30 s and shares her screen
// 30-50 s; Bob is recorded from 10 s and speaks 35-45 s; Carol is recorded all along and
// never speaks. Markers at 12 s and 40 s.
func fixture() Input {
	return Input{
		Title:    "Call in Test room",
		Subtitle: "2026-01-02 03:04 UTC · 1:00",
		Duration: time.Minute,
		Rows: []Row{
			{Name: "Alice", ID: "@alice:example.org", Present: []Span{span(0, 60)}, Speech: []Span{span(5, 15), span(20, 30)}, Screen: []Span{span(30, 50)}},
			{Name: "Bob", ID: "@bob:example.org", Present: []Span{span(10, 60)}, Speech: []Span{span(35, 45)}},
			{Name: "Carol", ID: "@carol:example.org", Present: []Span{span(0, 60)}},
		},
		Markers: []Marker{{At: sec(40), Text: "second"}, {At: sec(12), Text: "first"}},
	}
}

// renderPNG renders and decodes the PNG again: the checks read the file a user gets.
func renderPNG(t *testing.T, width int, in Input) (image.Image, Layout) {
	t.Helper()
	r, err := NewRenderer(width)
	if err != nil {
		t.Fatal(err)
	}
	img, l, err := r.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := EncodePNG(&buf, img); err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("decode png: %v", err)
	}
	if dec.Bounds() != img.Bounds() {
		t.Fatalf("decoded bounds %v, rendered %v", dec.Bounds(), img.Bounds())
	}
	return dec, l
}

func rgba(c color.Color) color.RGBA {
	r, g, b, a := c.RGBA()
	return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}
}

// xAt computes where time t must be from the plot's edges alone.
func xAt(l Layout, t time.Duration) int {
	return l.PlotLeft + int(float64(l.PlotRight-l.PlotLeft)*t.Seconds()/l.Duration.Seconds())
}

func midY(r image.Rectangle) int { return (r.Min.Y + r.Max.Y) / 2 }

func TestPictureContent(t *testing.T) {
	img, l := renderPNG(t, 0, fixture())
	b := img.Bounds()
	if b.Dx() != 1080 || b.Dy() < 600 || b.Dy() > 1600 {
		t.Fatalf("picture is %v", b)
	}
	if l.PlotLeft < 20 || l.PlotRight > 1060 || l.PlotRight-l.PlotLeft < 900 {
		t.Fatalf("plot from %d to %d", l.PlotLeft, l.PlotRight)
	}
	if len(l.Rows) != 3 {
		t.Fatalf("%d row layouts", len(l.Rows))
	}
	at := func(x, y int) color.RGBA { return rgba(img.At(x, y)) }
	type probe struct {
		row  int
		t    float64
		want color.RGBA
		what string
	}
	for _, p := range []probe{
		{0, 2, PresentColor, "alice silent"},
		{0, 7, RowColor(0), "alice speaking"},
		{0, 17, PresentColor, "alice pause"},
		{0, 25, RowColor(0), "alice speaking again"},
		{0, 55, PresentColor, "alice silent at the end"},
		{1, 5, AbsentColor, "bob not there yet"},
		{1, 20, PresentColor, "bob silent"},
		{1, 38, RowColor(1), "bob speaking"},
		{2, 38, PresentColor, "carol silent"},
	} {
		x := xAt(l, sec(p.t))
		if got := at(x, midY(l.Rows[p.row].Speech)); got != p.want {
			t.Errorf("%s: pixel at %.0f s (x=%d) is %v, want %v", p.what, p.t, x, got, p.want)
		}
	}
	// Screen share band of Alice, empty bands of the others.
	for _, p := range []probe{{0, 45, ScreenColor, "alice sharing"}, {0, 20, AbsentColor, "alice not sharing"}, {1, 45, AbsentColor, "bob not sharing"}} {
		rect := l.Rows[p.row].Screen
		if rect.Empty() {
			t.Fatalf("no screen band for row %d", p.row)
		}
		if got := at(xAt(l, sec(p.t)), midY(rect)); got != p.want {
			t.Errorf("%s: %v, want %v", p.what, got, p.want)
		}
	}
	// Bar edges: Alice's first speech starts at 5 s (within a pixel).
	y := midY(l.Rows[0].Speech)
	first := -1
	for x := l.PlotLeft; x < l.PlotRight; x++ {
		if at(x, y) == RowColor(0) {
			first = x
			break
		}
	}
	if want := xAt(l, sec(5)); first < want-1 || first > want+1 {
		t.Errorf("alice's speech starts at x=%d, want %d", first, want)
	}
	// Markers: a red line at 12 s and 40 s through every row, from above the first row to
	// the axis; none at 25 s.
	for _, m := range []float64{12, 40} {
		x := xAt(l, sec(m))
		for i, rl := range l.Rows {
			if got := at(x, midY(rl.Speech)); got != MarkerColor {
				t.Errorf("marker at %.0f s: row %d pixel %v", m, i, got)
			}
		}
		if got := at(x, l.AxisY-2); got != MarkerColor {
			t.Errorf("marker at %.0f s does not reach the axis: %v", m, got)
		}
		if got := at(x, l.Rows[0].Speech.Min.Y-4); got != MarkerColor {
			t.Errorf("marker at %.0f s does not start above the first row: %v", m, got)
		}
	}
	// Row count, found by scanning one column for bar-sized runs of bar colors.
	x := xAt(l, sec(50))
	runs, run := 0, 0
	barColors := map[color.RGBA]bool{PresentColor: true, AbsentColor: true, RowColor(0): true, RowColor(1): true, RowColor(2): true}
	for y := 0; y < b.Dy(); y++ {
		if barColors[at(x, y)] {
			run++
			continue
		}
		if run >= 40 {
			runs++
		}
		run = 0
	}
	if runs != 3 {
		t.Errorf("found %d bars in the column at 50 s, want 3", runs)
	}
	// Axis: a line, and ticks every 10 s below it.
	if got := at((l.PlotLeft+l.PlotRight)/2, l.AxisY); got != AxisColor {
		t.Errorf("axis line pixel %v", got)
	}
	for s := 0; s <= 60; s += 10 {
		if got := at(xAt(l, sec(float64(s))), l.AxisY+6); got != AxisColor {
			t.Errorf("no tick at %d s: %v", s, got)
		}
	}
	// Names are drawn above each bar: dark pixels in the strip above the bar.
	for i, rl := range l.Rows {
		dark := 0
		for y := rl.Speech.Min.Y - 40; y < rl.Speech.Min.Y-4; y++ {
			for x := l.PlotLeft; x < l.PlotLeft+200; x++ {
				if c := at(x, y); c.R < 0x80 && c.G < 0x80 && c.B < 0x80 {
					dark++
				}
			}
		}
		if dark < 100 {
			t.Errorf("row %d: no name drawn above the bar (%d dark pixels)", i, dark)
		}
	}
}

func TestPictureScalesAndClamps(t *testing.T) {
	in := fixture()
	in.Rows[0].Speech = append(in.Rows[0].Speech, span(-10, 2), span(58, 600), span(30, 20))
	img, l := renderPNG(t, 720, in)
	if img.Bounds().Dx() != 720 {
		t.Fatalf("width %d", img.Bounds().Dx())
	}
	if got := rgba(img.At(l.PlotLeft+1, midY(l.Rows[0].Speech))); got != RowColor(0) {
		t.Errorf("span from before the start not clamped to the start: %v", got)
	}
	if got := rgba(img.At(l.PlotRight-1, midY(l.Rows[0].Speech))); got != RowColor(0) {
		t.Errorf("span past the end not clamped to the end: %v", got)
	}
}

func TestPictureHostileInput(t *testing.T) {
	r, err := NewRenderer(0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("W", 10000)
	in := Input{
		Title:    "\x00\x1b[31m" + long,
		Duration: 0,
		Rows: []Row{
			{Name: "\u202e\u0000evil\nname", ID: "@x:y"},
			{Name: "😀😀", ID: ""},
			{Name: long, ID: long},
		},
		Markers: []Marker{{At: -time.Hour, Text: long}, {At: 100 * time.Hour, Text: "\n\n"}},
	}
	for i := 0; i < 30; i++ {
		in.Markers = append(in.Markers, Marker{At: time.Duration(i) * time.Millisecond, Text: "m"})
	}
	img, l, err := r.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 1080 || img.Bounds().Dy() > 3000 || len(l.Rows) != 3 {
		t.Fatalf("hostile input gave %v with %d rows", img.Bounds(), len(l.Rows))
	}
	if got := r.clean("a\x00b\nc\u200b😀d"); got != "a b cd" {
		t.Errorf("clean = %q", got)
	}
	if got := r.name(Row{Name: "😀😀", ID: "@x:y"}); got != "@x:y" {
		t.Errorf("name the font cannot draw: shown as %q, want the user id", got)
	}
	many := Input{Duration: time.Minute, Rows: make([]Row, MaxRows+1)}
	if _, _, err := r.Render(many); !errors.Is(err, ErrTooManyRows) {
		t.Errorf("too many rows: %v", err)
	}
	if _, _, err := r.Render(Input{}); err != nil {
		t.Errorf("empty input: %v", err)
	}
	if _, err := NewRenderer(100); err == nil {
		t.Error("tiny width accepted")
	}
}

func TestTickStepAndClock(t *testing.T) {
	for _, c := range []struct {
		d, want time.Duration
	}{{sec(5), time.Second}, {time.Minute, 10 * time.Second}, {42 * time.Minute, 10 * time.Minute}, {3 * time.Hour, 30 * time.Minute}} {
		if got := tickStep(c.d); got != c.want {
			t.Errorf("tickStep(%v) = %v, want %v", c.d, got, c.want)
		}
	}
	if Clock(sec(65.9)) != "1:05" || Clock(sec(3725)) != "1:02:05" || Clock(-time.Second) != "0:00" {
		t.Errorf("Clock: %s %s %s", Clock(sec(65.9)), Clock(sec(3725)), Clock(-time.Second))
	}
}
