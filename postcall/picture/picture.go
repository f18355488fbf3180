// Package picture draws the summary of a recorded call as a PNG: one row per participant
// with a bar wherever they spoke, their screen shares, the markers set during the call and
// a time axis. It is drawn with the standard image packages and the Go fonts, large enough
// to read at a glance on a phone.
package picture

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"sort"
	"strings"
	"time"
	"unicode"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// Span is a stretch of the call's timeline.
type Span struct {
	From, To time.Duration
}

// Row is one participant.
type Row struct {
	// Name is shown above the row; ID (the user id) is shown instead when the font
	// cannot draw the name.
	Name string
	ID   string
	// Present spans are when the participant was recorded (a light band).
	Present []Span
	// Speech spans are when they spoke.
	Speech []Span
	// Screen spans are when they shared their screen.
	Screen []Span
}

// Marker is a note on the timeline.
type Marker struct {
	At   time.Duration
	Text string
}

// Input is everything the picture shows.
type Input struct {
	Title    string
	Subtitle string
	Duration time.Duration
	Rows     []Row
	Markers  []Marker
}

// Limits: what comes from the network is bounded before it is drawn.
const (
	MaxRows          = 48
	maxListedMarkers = 10
	maxTextRunes     = 120
	minWidth         = 480
	maxWidth         = 4096
	// DefaultWidth suits phone screens: images are shown scaled to the screen width.
	DefaultWidth = 1080
)

// Colors. Each row has its own color for speech; screen shares and markers have one
// color each, unlike any row color.
var (
	Background   = color.RGBA{0xff, 0xff, 0xff, 0xff}
	AbsentColor  = color.RGBA{0xf1, 0xf3, 0xf4, 0xff}
	PresentColor = color.RGBA{0xda, 0xdc, 0xe0, 0xff}
	ScreenColor  = color.RGBA{0xf2, 0x99, 0x00, 0xff}
	MarkerColor  = color.RGBA{0xd9, 0x30, 0x25, 0xff}
	TextColor    = color.RGBA{0x20, 0x21, 0x24, 0xff}
	MutedColor   = color.RGBA{0x5f, 0x63, 0x68, 0xff}
	AxisColor    = color.RGBA{0x80, 0x86, 0x8b, 0xff}
)

var rowColors = []color.RGBA{
	{0x1a, 0x73, 0xe8, 0xff}, // blue
	{0x18, 0x80, 0x38, 0xff}, // green
	{0x93, 0x34, 0xe6, 0xff}, // purple
	{0x00, 0x7b, 0x83, 0xff}, // teal
	{0x3f, 0x51, 0xb5, 0xff}, // indigo
	{0x79, 0x55, 0x48, 0xff}, // brown
	{0xe5, 0x25, 0x92, 0xff}, // pink
	{0x3c, 0x40, 0x43, 0xff}, // graphite
}

// RowColor is the speech color of row i.
func RowColor(i int) color.RGBA {
	return rowColors[((i%len(rowColors))+len(rowColors))%len(rowColors)]
}

// Renderer draws pictures; it holds the parsed fonts.
type Renderer struct {
	regular, bold *sfnt.Font
	width         int
}

// NewRenderer parses the embedded fonts. width is the picture width in pixels (0:
// DefaultWidth).
func NewRenderer(width int) (*Renderer, error) {
	if width == 0 {
		width = DefaultWidth
	}
	if width < minWidth || width > maxWidth {
		return nil, fmt.Errorf("picture width %d must be between %d and %d", width, minWidth, maxWidth)
	}
	reg, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, fmt.Errorf("parse font: %w", err)
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, fmt.Errorf("parse font: %w", err)
	}
	return &Renderer{regular: reg, bold: bold, width: width}, nil
}

// Layout says where things were drawn (tests read pixels there).
type Layout struct {
	Width, Height int
	// PlotLeft and PlotRight are the x of time 0 and of the end of the call.
	PlotLeft, PlotRight int
	Duration            time.Duration
	Rows                []RowLayout
	// AxisY is the y of the time axis line.
	AxisY int
	// MarkerTop is where marker lines start.
	MarkerTop int
	// MarkerWidth is how wide a marker line is.
	MarkerWidth int
}

// RowLayout is where one row's bars are.
type RowLayout struct {
	Speech image.Rectangle
	// Screen is empty when nobody shared a screen.
	Screen image.Rectangle
}

// X is the x of time t.
func (l Layout) X(t time.Duration) int {
	if l.Duration <= 0 {
		return l.PlotLeft
	}
	t = min(max(t, 0), l.Duration)
	return l.PlotLeft + int(int64(l.PlotRight-l.PlotLeft)*int64(t)/int64(l.Duration))
}

// canvas is one picture being drawn.
type canvas struct {
	r     *Renderer
	img   *image.RGBA
	scale float64
	faces map[string]font.Face
}

func (c *canvas) px(v float64) int { return int(v*c.scale + 0.5) }

func (c *canvas) face(bold bool, size float64) font.Face {
	key := fmt.Sprintf("%v/%v", bold, size)
	if f, ok := c.faces[key]; ok {
		return f
	}
	fnt := c.r.regular
	if bold {
		fnt = c.r.bold
	}
	f, err := opentype.NewFace(fnt, &opentype.FaceOptions{Size: size * c.scale, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		// The embedded fonts always make faces; fall back to nothing drawn.
		return nil
	}
	c.faces[key] = f
	return f
}

// text draws s with its baseline at y, starting at x (align 0), centered on x (align 1)
// or ending at x (align 2). It returns the width drawn.
func (c *canvas) text(s string, x, y int, bold bool, size float64, col color.Color, align int) int {
	f := c.face(bold, size)
	if f == nil || s == "" {
		return 0
	}
	w := font.MeasureString(f, s).Ceil()
	switch align {
	case 1:
		x -= w / 2
	case 2:
		x -= w
	}
	d := font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: f, Dot: fixed.P(x, y)}
	d.DrawString(s)
	return w
}

func (c *canvas) width(s string, bold bool, size float64) int {
	f := c.face(bold, size)
	if f == nil {
		return 0
	}
	return font.MeasureString(f, s).Ceil()
}

// fit shortens s with an ellipsis until it is at most w pixels wide.
func (c *canvas) fit(s string, bold bool, size float64, w int) string {
	if c.width(s, bold, size) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && c.width(string(r)+"…", bold, size) > w {
		r = r[:len(r)-1]
	}
	return strings.TrimSpace(string(r)) + "…"
}

func (c *canvas) fill(r image.Rectangle, col color.Color) {
	draw.Draw(c.img, r, image.NewUniform(col), image.Point{}, draw.Src)
}

// disc fills a circle.
func (c *canvas) disc(cx, cy, radius int, col color.Color) {
	for y := -radius; y <= radius; y++ {
		for x := -radius; x <= radius; x++ {
			if x*x+y*y <= radius*radius {
				c.img.Set(cx+x, cy+y, col)
			}
		}
	}
}

// covered reports whether the font can draw every rune of s.
func (r *Renderer) covered(s string) bool {
	var buf sfnt.Buffer
	for _, ch := range s {
		if ch == ' ' {
			continue
		}
		if i, err := r.regular.GlyphIndex(&buf, ch); err != nil || i == 0 {
			return false
		}
	}
	return true
}

// clean makes text from the network drawable: no control characters, runes the font
// lacks dropped, spaces collapsed, bounded length.
func (r *Renderer) clean(s string) string {
	var buf sfnt.Buffer
	var b strings.Builder
	n := 0
	space := false
	for _, ch := range s {
		if unicode.IsSpace(ch) || unicode.IsControl(ch) {
			space = b.Len() > 0
			continue
		}
		if i, err := r.regular.GlyphIndex(&buf, ch); err != nil || i == 0 {
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(ch)
		if n++; n >= maxTextRunes {
			break
		}
	}
	return b.String()
}

// name picks what to show for a row.
func (r *Renderer) name(row Row) string {
	if n := strings.TrimSpace(row.Name); n != "" && r.covered(n) {
		return r.clean(n)
	}
	if id := r.clean(row.ID); id != "" {
		return id
	}
	if n := r.clean(row.Name); n != "" {
		return n
	}
	return "?"
}

// ErrTooManyRows is returned when there are more rows than MaxRows.
var ErrTooManyRows = errors.New("too many rows")

// Render draws the picture.
func (r *Renderer) Render(in Input) (*image.RGBA, Layout, error) {
	if len(in.Rows) > MaxRows {
		return nil, Layout{}, fmt.Errorf("%w: %d, at most %d", ErrTooManyRows, len(in.Rows), MaxRows)
	}
	dur := in.Duration
	if dur <= 0 {
		dur = time.Second
	}
	c := &canvas{r: r, scale: float64(r.width) / DefaultWidth, faces: map[string]font.Face{}}
	anyScreen := false
	for _, row := range in.Rows {
		anyScreen = anyScreen || len(row.Screen) > 0
	}
	markers := append([]Marker(nil), in.Markers...)
	sort.SliceStable(markers, func(i, j int) bool { return markers[i].At < markers[j].At })

	// Vertical layout (in pixels at DefaultWidth, scaled).
	margin := c.px(48)
	l := Layout{Width: r.width, PlotLeft: margin, PlotRight: r.width - margin, Duration: dur, MarkerWidth: max(c.px(3), 2)}
	y := c.px(40)
	titleY := y + c.px(48)
	subY := titleY + c.px(48)
	legendY := subY + c.px(56)
	y = legendY + c.px(24)
	lanes := markerLanes(markers, l, c.px(48))
	nLanes := 0
	for _, ln := range lanes {
		nLanes = max(nLanes, ln+1)
	}
	laneTop := y
	if len(markers) > 0 {
		y += nLanes * c.px(52)
	}
	l.MarkerTop = y
	y += c.px(8)
	nameSize, barH, screenH, gap := 36.0, c.px(60), c.px(18), c.px(28)
	type rowPos struct{ nameY int }
	rowsAt := make([]rowPos, len(in.Rows))
	for i := range in.Rows {
		rowsAt[i].nameY = y + c.px(nameSize)
		top := rowsAt[i].nameY + c.px(14)
		rl := RowLayout{Speech: image.Rect(l.PlotLeft, top, l.PlotRight, top+barH)}
		y = top + barH
		if anyScreen {
			rl.Screen = image.Rect(l.PlotLeft, y+c.px(4), l.PlotRight, y+c.px(4)+screenH)
			y = rl.Screen.Max.Y
		}
		l.Rows = append(l.Rows, rl)
		y += gap
	}
	if len(in.Rows) == 0 {
		y += c.px(80)
	}
	l.AxisY = y
	axisLabelY := y + c.px(14) + c.px(32)
	y = axisLabelY + c.px(24)
	listed := min(len(markers), maxListedMarkers)
	listTop := y
	if len(markers) > 0 {
		y += c.px(12) + listed*c.px(46)
		if len(markers) > listed {
			y += c.px(46)
		}
	}
	l.Height = y + c.px(32)

	c.img = image.NewRGBA(image.Rect(0, 0, l.Width, l.Height))
	c.fill(c.img.Bounds(), Background)

	// Header.
	textW := l.PlotRight - l.PlotLeft
	title := r.clean(in.Title)
	if title == "" {
		title = "Call recording"
	}
	c.text(c.fit(title, true, 48, textW), margin, titleY, true, 48, TextColor, 0)
	c.text(c.fit(r.clean(in.Subtitle), false, 32, textW), margin, subY, false, 32, MutedColor, 0)
	x := margin
	sw := c.px(26)
	legend := func(col color.Color, label string) {
		c.fill(image.Rect(x, legendY-sw+c.px(2), x+sw, legendY+c.px(2)), col)
		if col == RowColor(0) && len(in.Rows) > 1 {
			// Speech has a color per row: show the first ones side by side.
			n := min(len(in.Rows), 3)
			for k := range n {
				c.fill(image.Rect(x+k*sw/n, legendY-sw+c.px(2), x+(k+1)*sw/n, legendY+c.px(2)), RowColor(k))
			}
		}
		x += sw + c.px(10)
		x += c.text(label, x, legendY, false, 28, MutedColor, 0) + c.px(28)
	}
	legend(RowColor(0), "speaking")
	legend(PresentColor, "recorded, silent")
	if anyScreen {
		legend(ScreenColor, "screen share")
	}
	if len(markers) > 0 {
		legend(MarkerColor, "marker")
	}

	// Marker lines first, under the names; they are drawn again over the bars below.
	for _, m := range markers {
		c.markerLine(l, m, l.MarkerTop, l.AxisY)
	}

	// Rows.
	for i, row := range in.Rows {
		rl := l.Rows[i]
		c.text(c.fit(r.name(row), true, nameSize, textW), margin, rowsAt[i].nameY, true, nameSize, TextColor, 0)
		c.fill(rl.Speech, AbsentColor)
		c.spans(row.Present, rl.Speech, l, PresentColor)
		c.spans(row.Speech, rl.Speech, l, RowColor(i))
		if anyScreen {
			c.fill(rl.Screen, AbsentColor)
			c.spans(row.Screen, rl.Screen, l, ScreenColor)
		}
	}
	if len(in.Rows) == 0 {
		c.text("Nobody was recorded.", margin, l.AxisY-c.px(30), false, 32, MutedColor, 0)
	}

	// Time axis.
	c.fill(image.Rect(l.PlotLeft, l.AxisY, l.PlotRight+1, l.AxisY+max(c.px(2), 1)), AxisColor)
	step := tickStep(dur)
	for t := time.Duration(0); t <= dur; t += step {
		tx := l.X(t)
		c.fill(image.Rect(tx-max(c.px(1), 1), l.AxisY, tx+max(c.px(1), 1), l.AxisY+c.px(14)), AxisColor)
		align := 1
		if t == 0 {
			align = 0
			tx = l.PlotLeft
		} else if l.PlotRight-tx < c.px(50) {
			align = 2
			tx = l.PlotRight
		}
		c.text(Clock(t), tx, axisLabelY, false, 28, MutedColor, align)
	}

	// Markers: lines over the rows, numbered badges above them, a list below the axis.
	radius := c.px(20)
	for i, m := range markers {
		mx := l.X(m.At)
		for _, rl := range l.Rows {
			c.markerLine(l, m, rl.Speech.Min.Y, rl.Speech.Max.Y)
			if !rl.Screen.Empty() {
				c.markerLine(l, m, rl.Screen.Min.Y, rl.Screen.Max.Y)
			}
		}
		cy := laneTop + lanes[i]*c.px(52) + radius + c.px(4)
		c.disc(mx, cy, radius, MarkerColor)
		c.text(fmt.Sprint(i+1), mx, cy+c.px(8), true, 22, Background, 1)
	}
	ly := listTop + c.px(12)
	for i, m := range markers[:listed] {
		ly += c.px(46)
		numW := c.text(fmt.Sprintf("%d", i+1), margin, ly, true, 30, MarkerColor, 0)
		tx := margin + max(numW, c.px(36)) + c.px(12)
		tx += c.text(Clock(m.At), tx, ly, true, 30, TextColor, 0) + c.px(16)
		c.text(c.fit(r.clean(m.Text), false, 30, l.PlotRight-tx), tx, ly, false, 30, TextColor, 0)
	}
	if len(markers) > listed {
		ly += c.px(46)
		c.text(fmt.Sprintf("… and %d more markers (in the manifest and labels.txt)", len(markers)-listed), margin, ly, false, 30, MutedColor, 0)
	}
	for _, f := range c.faces {
		_ = f.Close()
	}
	return c.img, l, nil
}

// markerLine draws a marker's line from y0 to y1.
func (c *canvas) markerLine(l Layout, m Marker, y0, y1 int) {
	x := l.X(m.At) - l.MarkerWidth/2
	c.fill(image.Rect(x, y0, x+l.MarkerWidth, y1), MarkerColor)
}

// spans fills the spans of a row's bar; a span is at least one pixel wide.
func (c *canvas) spans(spans []Span, bar image.Rectangle, l Layout, col color.Color) {
	for _, s := range spans {
		if s.To < s.From {
			continue
		}
		x0, x1 := l.X(s.From), l.X(s.To)
		if x1 <= x0 {
			x1 = x0 + 1
		}
		c.fill(image.Rect(x0, bar.Min.Y, x1, bar.Max.Y), col)
	}
}

// markerLanes puts marker badges into lanes so that neighbours do not overlap (three
// lanes; beyond that they overlap).
func markerLanes(markers []Marker, l Layout, minGap int) []int {
	lanes := make([]int, len(markers))
	last := []int{-1 << 30, -1 << 30, -1 << 30}
	for i, m := range markers {
		x := l.X(m.At)
		lanes[i] = 0
		for ln := range last {
			if x-last[ln] >= minGap {
				lanes[i] = ln
				break
			}
			lanes[i] = ln
		}
		last[lanes[i]] = x
	}
	return lanes
}

// tickStep picks a round step giving at most six intervals on the axis.
func tickStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	} {
		if d/s <= 6 {
			return s
		}
	}
	return 24 * time.Hour
}

// Clock formats a time on the call's timeline: "m:ss" or "h:mm:ss".
func Clock(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// EncodePNG writes img as a PNG.
func EncodePNG(w io.Writer, img image.Image) error {
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(w, img); err != nil {
		return fmt.Errorf("encode png: %w", err)
	}
	return nil
}
