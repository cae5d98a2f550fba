package chart

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gonum.org/v1/plot"
)

func ptr(v float64) *float64 { return &v }

// sample has eight series, the most a model is expected to draw, so the
// tests exercise the palette and a tall legend.
func sample() Chart {
	c := Chart{Title: "Amplification by tiers", XLabel: "tiers", YLabel: "calls per request"}
	for i := range 8 {
		s := Series{Name: fmt.Sprintf("policy-%d", i)}
		for tiers := 1; tiers <= 5; tiers++ {
			s.X = append(s.X, float64(tiers))
			s.Y = append(s.Y, math.Pow(float64(i+2), float64(tiers)))
		}
		c.Series = append(c.Series, s)
	}
	return c
}

func render(t *testing.T, c Chart, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(c, &buf, format); err != nil {
		t.Fatalf("Write(%s): %v", format, err)
	}
	if buf.Len() == 0 {
		t.Fatalf("Write(%s): empty output", format)
	}
	return buf.Bytes()
}

func TestSave(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "dir") // Save must create it
	c := sample()
	if err := Save(c, dir, "amp"); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "amp.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(svg, []byte("<?xml")) && !bytes.HasPrefix(svg, []byte("<svg")) {
		t.Errorf("SVG starts with %q", svg[:min(len(svg), 20)])
	}
	for _, want := range append([]string{c.Title, c.XLabel, c.YLabel}, names(c)...) {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	png, err := os.ReadFile(filepath.Join(dir, "amp.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("PNG lacks the PNG signature")
	}
}

func names(c Chart) []string {
	var out []string
	for _, s := range c.Series {
		out = append(out, s.Name)
	}
	return out
}

func TestWriteDeterministic(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"svg", "png"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			c := sample()
			c.LogY = true
			a, b := render(t, c, format), render(t, c, format)
			if !bytes.Equal(a, b) {
				t.Errorf("two renders differ (%d and %d bytes)", len(a), len(b))
			}
		})
	}
}

func TestWriteVariants(t *testing.T) {
	t.Parallel()
	x, y := Histogram([]float64{1, 2, 15, 17, 18, 42}, 10)
	flat := Chart{Title: "flat", Series: []Series{{Name: "one", X: []float64{1, 2}, Y: []float64{3, 3}}}}
	flatLog := flat
	flatLog.LogY = true
	single := Chart{Title: "single", Series: []Series{{Name: "p", X: []float64{1}, Y: []float64{1}}}}
	fixed := sample()
	fixed.LogY = true
	fixed.XMin, fixed.XMax, fixed.YMin, fixed.YMax = ptr(0), ptr(6), ptr(1), ptr(1e4)
	logOne := sample()
	logOne.LogY = true
	logOne.YMax = ptr(100) // one fixed bound: no decade rescaling
	many := Chart{Title: "many"}
	for i := range 12 { // past the palette: colours repeat with dashes
		many.Series = append(many.Series, Series{Name: fmt.Sprint(i), X: []float64{0, 1}, Y: []float64{0, float64(i)}})
	}
	long := Chart{Series: []Series{{Name: strings.Repeat("very long name ", 20), X: []float64{0, 1}, Y: []float64{0, 1}}}}

	for name, c := range map[string]Chart{
		"log":        func() Chart { c := sample(); c.LogY = true; return c }(),
		"step":       {Title: "calls", XLabel: "ms", YLabel: "calls", Step: true, Series: []Series{{Name: "calls", X: x, Y: y}}},
		"flat":       flat,
		"flat log":   flatLog,
		"single":     single,
		"fixed":      fixed,
		"log one":    logOne,
		"many":       many,
		"long name":  long,
		"no labels":  {Series: []Series{{X: []float64{0, 1}, Y: []float64{-1, 1}}}},
		"negative x": {Series: []Series{{Name: "n", X: []float64{-5, -1}, Y: []float64{2, 1}}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			render(t, c, "svg")
			// The layout is shared, so one PNG proves the raster path;
			// more would only slow the race-detector run (~0.5 s each).
			if name == "step" {
				render(t, c, "PNG")
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	good := Series{Name: "s", X: []float64{1, 2}, Y: []float64{1, 2}}
	cases := map[string]Chart{
		"no series":     {},
		"mismatched":    {Series: []Series{good, {Name: "bad", X: []float64{1, 2}, Y: []float64{1}}}},
		"no points":     {Series: []Series{{Name: "empty"}}},
		"NaN":           {Series: []Series{{X: []float64{1, math.NaN()}, Y: []float64{1, 2}}}},
		"Inf":           {Series: []Series{{X: []float64{1, 2}, Y: []float64{1, math.Inf(1)}}}},
		"log zero":      {LogY: true, Series: []Series{{X: []float64{1, 2}, Y: []float64{0, 2}}}},
		"log negative":  {LogY: true, Series: []Series{{X: []float64{1, 2}, Y: []float64{1, -2}}}},
		"log YMin zero": {LogY: true, YMin: ptr(0), Series: []Series{good}},
		"log YMax neg":  {LogY: true, YMax: ptr(-1), Series: []Series{good}},
		"NaN bound":     {XMin: ptr(math.NaN()), Series: []Series{good}},
		"inverted X":    {XMin: ptr(5), XMax: ptr(1), Series: []Series{good}},
		"flat fixed Y":  {YMin: ptr(3), YMax: ptr(3), Series: []Series{good}},
		"YMin past max": {YMin: ptr(10), Series: []Series{good}},
		"log flat YMax": {LogY: true, YMax: ptr(1), Series: []Series{good}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			for _, format := range []string{"svg", "png"} {
				if err := Write(c, io.Discard, format); err == nil {
					t.Errorf("Write(%s): no error", format)
				} else if !strings.HasPrefix(err.Error(), "chart: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
			}
			if err := Save(c, t.TempDir(), "x"); err == nil {
				t.Error("Save: no error")
			}
		})
	}

	c := Chart{Series: []Series{good}}
	if err := Write(c, io.Discard, "pdf"); err == nil {
		t.Error("unknown format: no error")
	}
	for _, name := range []string{"", "a/b", `a\b`, ".", ".."} {
		dir := t.TempDir()
		if err := Save(c, dir, name); err == nil {
			t.Errorf("Save name %q: no error", name)
		}
	}
	// A failed Save writes nothing, not even the directory.
	dir := filepath.Join(t.TempDir(), "out")
	if err := Save(Chart{}, dir, "x"); err == nil {
		t.Error("Save of no series: no error")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("failed Save created %s (%v)", dir, err)
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		times []float64
		width float64
		x, y  []float64
	}{
		{"empty", nil, 10, nil, nil},
		{"zero width", []float64{1}, 0, nil, nil},
		{"negative width", []float64{1}, -1, nil, nil},
		{"NaN width", []float64{1}, math.NaN(), nil, nil},
		{"Inf width", []float64{1}, math.Inf(1), nil, nil},
		{"only NaN", []float64{math.NaN()}, 10, nil, nil},
		{"one", []float64{7}, 10, []float64{0}, []float64{1}},
		{"aligned start", []float64{23, 25}, 10, []float64{20}, []float64{2}},
		{"edges", []float64{0, 9.999, 10, 20}, 10, []float64{0, 10, 20}, []float64{2, 1, 1}},
		{"gap counts zero", []float64{1, 2, 35}, 10, []float64{0, 10, 20, 30}, []float64{2, 0, 0, 1}},
		{"unsorted", []float64{35, 1, 12, 2}, 10, []float64{0, 10, 20, 30}, []float64{2, 1, 0, 1}},
		{"negative", []float64{-1, -10, 0}, 10, []float64{-10, 0}, []float64{2, 1}},
		{"skips non-finite", []float64{5, math.Inf(1), math.NaN(), 15}, 10, []float64{0, 10}, []float64{1, 1}},
		{"fractional width", []float64{0.1, 0.6, 0.7}, 0.5, []float64{0, 0.5}, []float64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, y := Histogram(tc.times, tc.width)
			if !reflect.DeepEqual(x, tc.x) || !reflect.DeepEqual(y, tc.y) {
				t.Errorf("Histogram(%v, %v) = %v, %v; want %v, %v", tc.times, tc.width, x, y, tc.x, tc.y)
			}
		})
	}
}

type fixedTicks []string

func (f fixedTicks) Ticks(float64, float64) []plot.Tick {
	ticks := make([]plot.Tick, len(f))
	for i, l := range f {
		ticks[i].Label = l
	}
	return ticks
}

func TestTrimmedTicks(t *testing.T) {
	in := fixedTicks{"0.00", "2.50", "5.00", "-0.00", "10", "1.5e+07", "", "0.125"}
	want := []string{"0", "2.5", "5", "0", "10", "1.5e+07", "", "0.125"}
	var got []string
	for _, tk := range (trimmedTicks{in}).Ticks(0, 1) {
		got = append(got, tk.Label)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("labels %q, want %q", got, want)
	}
}

// A series identical to an earlier one is named as such in the legend and
// drawn dashed, so that it does not hide the other.
func TestDuplicates(t *testing.T) {
	a := Series{Name: "heed", X: []float64{1, 2}, Y: []float64{3, 4}}
	b := Series{Name: "heed-no-budget", X: []float64{1, 2}, Y: []float64{3, 4}}
	c := Series{Name: "other", X: []float64{1, 2}, Y: []float64{3, 5}}
	if got := Duplicates([]Series{a, c, b}); !reflect.DeepEqual(got, []int{-1, -1, 0}) {
		t.Errorf("Duplicates = %v", got)
	}
	svg := render(t, Chart{Title: "t", Series: []Series{a, c, b}}, "svg")
	if !bytes.Contains(svg, []byte("heed-no-budget (same as heed)")) {
		t.Error("legend lacks the note")
	}
}
