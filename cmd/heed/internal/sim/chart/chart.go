// Package chart writes line charts as SVG and PNG files for heed sim, so
// that every simulation model can save its plots the same way.
//
// It is a thin layer over gonum.org/v1/plot that fixes one plain style
// (title, axis labels, light grid, one colour per series, legend outside
// the data area) and validates input up front, because gonum/plot panics
// on some bad input (for example a non-positive value on a log axis).
//
// Output is deterministic: the same Chart renders to byte-identical SVG
// and PNG, so saved plots can be committed and diffed.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Size of every chart: 16 cm x 10 cm fits a page or a slide unscaled.
const (
	pageW = 16 * vg.Centimeter
	pageH = 10 * vg.Centimeter
)

// pngDPI is higher than vgimg's 96 so that text stays legible when the
// PNG is viewed zoomed; 16 cm at 150 dpi is 945 x 591 pixels.
const pngDPI = 150

// Series is one named line of a chart. X and Y must have the same length.
type Series struct {
	Name string
	X, Y []float64
	// Reference draws the series as a thin grey dashed line, such as a
	// limit the other series are measured against; it takes no colour
	// from the palette.
	Reference bool
}

// Chart describes a line chart with one or more series.
type Chart struct {
	Title, XLabel, YLabel string
	Series                []Series

	// LogY makes the Y axis logarithmic (for example amplification
	// against the number of tiers). Every Y value must then be > 0.
	LogY bool

	// XMin, XMax, YMin and YMax fix an axis bound; nil means automatic
	// (the data's extent).
	XMin, XMax, YMin, YMax *float64

	// Step draws each series as steps that hold a value until the next
	// X (post-step), which suits counts per bucket from Histogram. The
	// last value is held for as long as the step before it, so the last
	// bucket shows with its width instead of as a bare point.
	Step bool
}

// palette is Tableau 10: distinct hues that stay apart for colour-blind
// readers and on grey-scale prints. Series past its length reuse the
// colours with a dash pattern, so they stay distinguishable.
var palette = []color.Color{
	rgb(0x4e79a7), rgb(0xf28e2b), rgb(0xe15759), rgb(0x76b7b2), rgb(0x59a14f),
	rgb(0xedc948), rgb(0xb07aa1), rgb(0xff9da7), rgb(0x9c755f), rgb(0xbab0ac),
}

func rgb(v uint32) color.Color {
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

// Save writes c to dir/name.svg and dir/name.png (creating dir if needed),
// 16 cm x 10 cm. Both files are rendered before either is written, so a
// render error leaves no partial output.
func Save(c Chart, dir, name string) error {
	if name == "" {
		return errors.New("chart: empty file name")
	}
	// The name is a base name: a separator would silently write elsewhere.
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("chart: file name %q must not contain a path", name)
	}
	var svg, png bytes.Buffer
	if err := Write(c, &svg, "svg"); err != nil {
		return err
	}
	if err := Write(c, &png, "png"); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".svg"), svg.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// Write renders c in format ("svg" or "png", case-insensitive) to w.
func Write(c Chart, w io.Writer, format string) error {
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch strings.ToLower(format) {
	case "svg":
		// Fonts are not embedded: it would add hundreds of kilobytes per
		// file, and viewers fall back to a similar serif font.
		canvas = vgsvg.New(pageW, pageH)
	case "png":
		img := vgimg.NewWith(vgimg.UseWH(pageW, pageH), vgimg.UseDPI(pngDPI))
		canvas = vgimg.PngCanvas{Canvas: img}
	default:
		return fmt.Errorf("chart: unknown format %q (want \"svg\" or \"png\")", format)
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := c.draw(draw.New(canvas)); err != nil {
		return err
	}
	if _, err := canvas.WriteTo(w); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// validate rejects everything gonum/plot would panic on or draw
// misleadingly, with an error that names the offending series.
func (c *Chart) validate() error {
	if len(c.Series) == 0 {
		return errors.New("chart: no series")
	}
	for i, s := range c.Series {
		label := fmt.Sprintf("series %d (%q)", i, s.Name)
		if len(s.X) != len(s.Y) {
			return fmt.Errorf("chart: %s has %d X values but %d Y values", label, len(s.X), len(s.Y))
		}
		if len(s.X) == 0 {
			return fmt.Errorf("chart: %s has no points", label)
		}
		for j := range s.X {
			if !finite(s.X[j]) || !finite(s.Y[j]) {
				return fmt.Errorf("chart: %s point %d is not finite (%v, %v)", label, j, s.X[j], s.Y[j])
			}
			if c.LogY && s.Y[j] <= 0 {
				return fmt.Errorf("chart: %s point %d has Y = %v, but a log Y axis needs Y > 0", label, j, s.Y[j])
			}
		}
	}
	for _, b := range []struct {
		name string
		v    *float64
	}{{"XMin", c.XMin}, {"XMax", c.XMax}, {"YMin", c.YMin}, {"YMax", c.YMax}} {
		if b.v != nil && !finite(*b.v) {
			return fmt.Errorf("chart: %s is not finite (%v)", b.name, *b.v)
		}
	}
	if c.LogY && c.YMin != nil && *c.YMin <= 0 {
		return fmt.Errorf("chart: YMin = %v, but a log Y axis needs YMin > 0", *c.YMin)
	}
	if c.LogY && c.YMax != nil && *c.YMax <= 0 {
		return fmt.Errorf("chart: YMax = %v, but a log Y axis needs YMax > 0", *c.YMax)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// draw lays the chart out on dc: a small margin, the plot on the left and
// the legend in a column on the right, top-aligned with the data area, so
// that it never covers a line.
func (c *Chart) draw(dc draw.Canvas) error {
	p := plot.New()
	p.Title.Text = c.Title
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = c.XLabel
	// The Y label is drawn by drawYLabel, not by gonum, whose layout
	// reserves space for it at the wrong height on a log axis.
	p.X.Tick.Marker = trimmedTicks{plot.DefaultTicks{}}
	p.Y.Tick.Marker = trimmedTicks{plot.DefaultTicks{}}
	p.Add(plotter.NewGrid())

	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	leg.TextStyle.Font.Size = vg.Points(10)
	leg.Padding = vg.Points(2)
	same := Duplicates(c.Series)
	colour := 0
	for i, s := range c.Series {
		xys := make(plotter.XYs, len(s.X), len(s.X)+1)
		for j := range s.X {
			xys[j].X, xys[j].Y = s.X[j], s.Y[j]
		}
		if n := len(xys); c.Step && n >= 2 {
			last := xys[n-1]
			xys = append(xys, plotter.XY{X: 2*last.X - xys[n-2].X, Y: last.Y})
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("chart: series %d (%q): %w", i, s.Name, err)
		}
		line.Color = palette[colour%len(palette)]
		line.Width = vg.Points(1.5)
		if round := colour / len(palette); round > 0 {
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(2 * float64(round))}
		}
		if s.Reference {
			line.Color = color.Gray{Y: 0x70}
			line.Width = vg.Points(1)
			line.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		} else {
			colour++
		}
		name := s.Name
		if j := same[i]; j >= 0 {
			// Drawn over an identical series it would hide it: dashes let
			// the one below show through, and the legend says why.
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(4)}
			name += " (same as " + c.Series[j].Name + ")"
		}
		if c.Step {
			line.StepStyle = plotter.PostStep
		}
		p.Add(line)
		leg.Add(name, line)
	}

	if c.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		// Whole decades, so the axis always shows at least two labels;
		// only when the user fixed no Y bound, which it would override.
		p.Y.AutoRescale = c.YMin == nil && c.YMax == nil
		if p.Y.Min == p.Y.Max {
			// gonum widens a flat range by ±1, which may cross zero.
			p.Y.Min, p.Y.Max = p.Y.Min/10, p.Y.Max*10
		}
	}
	setBound(&p.X.Min, c.XMin)
	setBound(&p.X.Max, c.XMax)
	setBound(&p.Y.Min, c.YMin)
	setBound(&p.Y.Max, c.YMax)
	if err := checkRange("X", p.X.Min, p.X.Max, c.XMin != nil || c.XMax != nil); err != nil {
		return err
	}
	// A flat log range was widened above, so a flat one here came from a
	// fixed bound; gonum would widen it by ±1, possibly across zero.
	if err := checkRange("Y", p.Y.Min, p.Y.Max, c.LogY || c.YMin != nil || c.YMax != nil); err != nil {
		return err
	}

	// A white page first: the plot fills only its own part.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())

	margin := vg.Points(6)
	gap := vg.Points(8)
	page := draw.Crop(dc, margin, -margin, margin, -margin)
	legW := leg.Rectangle(page).Size().X
	// Long names would squeeze the plot away; past this they overflow.
	if maxW := page.Size().X * 2 / 5; legW > maxW {
		legW = maxW
	}
	area := draw.Crop(page, 0, -(legW + gap), 0, 0)
	labelled := area
	if c.YLabel != "" {
		sty := p.Y.Label.TextStyle
		labelled = draw.Crop(area, sty.FontExtents().Descent+sty.Height(c.YLabel)+p.Y.Label.Padding, 0, 0, 0)
	}
	p.Draw(labelled)

	data := p.DataCanvas(labelled)
	if c.YLabel != "" {
		// Centred on the data area, as gonum would on a linear axis.
		sty := p.Y.Label.TextStyle
		sty.Rotation += math.Pi / 2
		x := area.Min.X + sty.Height(c.YLabel) - sty.FontExtents().Descent
		dc.FillText(sty, vg.Point{X: x, Y: data.Center().Y}, c.YLabel)
	}
	leg.Draw(draw.Canvas{
		Canvas: dc.Canvas,
		Rectangle: vg.Rectangle{
			Min: vg.Point{X: area.Max.X + gap, Y: page.Min.Y},
			Max: vg.Point{X: page.Max.X, Y: data.Max.Y},
		},
	})
	return nil
}

// Duplicates returns, for each series, the index of the first earlier
// series with exactly the same points, or -1: a line drawn over an
// identical one would hide it.
func Duplicates(series []Series) []int {
	out := make([]int, len(series))
	for i, s := range series {
		out[i] = -1
		for j := range i {
			if slices.Equal(s.X, series[j].X) && slices.Equal(s.Y, series[j].Y) {
				out[i] = j
				break
			}
		}
	}
	return out
}

// trimmedTicks drops the trailing zeros gonum pads tick labels with
// ("2.50", "5.00"), which read as false precision on counts.
type trimmedTicks struct{ plot.Ticker }

func (t trimmedTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := t.Ticker.Ticks(lo, hi)
	for i, tk := range ticks {
		l := tk.Label
		if !strings.Contains(l, ".") || strings.ContainsAny(l, "eE") {
			continue
		}
		l = strings.TrimRight(strings.TrimRight(l, "0"), ".")
		if l == "-0" {
			l = "0"
		}
		ticks[i].Label = l
	}
	return ticks
}

// checkRange rejects an axis range that is inverted, or flat when strict.
// A flat automatic range (one distinct value) is fine: gonum widens it.
func checkRange(axis string, lo, hi float64, strict bool) error {
	if lo > hi || (strict && lo == hi) {
		return fmt.Errorf("chart: empty %s range [%v, %v]", axis, lo, hi)
	}
	return nil
}

func setBound(dst *float64, v *float64) {
	if v != nil {
		*dst = *v
	}
}

// Histogram buckets event times (for example milliseconds) into counts
// per bucket of the given width, for call-rate charts (use Chart.Step).
// Bucket k holds the times t with floor(t/width) == k, so buckets are
// aligned to multiples of width. x holds the bucket starts, contiguous
// from the first non-empty bucket to the last (empty buckets in between
// count 0, so a gap shows as a drop to zero), and y the counts.
//
// NaN and infinite times are skipped. With no usable times, or a width
// that is not a positive finite number, it returns nil, nil. The result
// has one entry per bucket in the span, so choose width accordingly.
func Histogram(times []float64, width float64) (x, y []float64) {
	if !(width > 0) || math.IsInf(width, 0) {
		return nil, nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, t := range times {
		if !finite(t) {
			continue
		}
		k := math.Floor(t / width)
		lo, hi = math.Min(lo, k), math.Max(hi, k)
	}
	if lo > hi {
		return nil, nil
	}
	n := int(hi-lo) + 1
	x = make([]float64, n)
	y = make([]float64, n)
	for i := range x {
		// Multiply rather than accumulate, so starts do not drift.
		x[i] = (lo + float64(i)) * width
	}
	for _, t := range times {
		if finite(t) {
			y[int(math.Floor(t/width)-lo)]++
		}
	}
	return x, y
}
