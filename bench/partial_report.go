package bench

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WritePartial writes a sweep's results to dir (created if needed):
// partial.csv with a row per result, and for each chain length and failure
// kind two charts against the failure rate with a line per contender,
// success-<tiers>-<kind>.svg (top calls answered 200, %) and
// load-<tiers>-<kind>.svg (load aimed at the bottom over top calls). A
// cell run several times (-count) is charted at its mean.
func WritePartial(dir string, rs []PartialResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writePartialCSV(filepath.Join(dir, "partial.csv"), rs); err != nil {
		return err
	}
	type group struct {
		tiers int
		kind  FailureKind
	}
	type cell struct {
		group
		contender string
		rate      float64
	}
	var (
		groups     []group
		contenders []string
		sums       = map[cell][3]float64{} // success, load, runs
	)
	for _, r := range rs {
		g := group{r.Scenario.Tiers, r.Scenario.Kind}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
		if !slices.Contains(contenders, r.Contender) {
			contenders = append(contenders, r.Contender)
		}
		c := cell{g, r.Contender, r.Scenario.Rate}
		s := sums[c]
		sums[c] = [3]float64{s[0] + 100*r.Success(), s[1] + r.Load(), s[2] + 1}
	}
	for _, g := range groups {
		var success, load []series
		for _, name := range contenders {
			var rates []float64
			for c := range sums {
				if c.group == g && c.contender == name {
					rates = append(rates, c.rate)
				}
			}
			if len(rates) == 0 {
				continue
			}
			slices.Sort(rates)
			s, l := series{name: name}, series{name: name}
			for _, rate := range rates {
				v := sums[cell{g, name, rate}]
				s.xys = append(s.xys, plotter.XY{X: 100 * rate, Y: v[0] / v[2]})
				l.xys = append(l.xys, plotter.XY{X: 100 * rate, Y: v[1] / v[2]})
			}
			success, load = append(success, s), append(load, l)
		}
		sc := PartialScenario{Tiers: g.tiers}
		title := fmt.Sprintf("%s, bottom fails with %s", sc.TierName(), g.kind)
		name := sc.TierName() + "-" + string(g.kind) + ".svg"
		err := writeChart(filepath.Join(dir, "success-"+name), chart{
			title: title, x: "bottom failure rate (%)", y: "top calls answered 200 (%)",
			series: success, yMin: 0, yMax: 100,
		})
		if err != nil {
			return err
		}
		err = writeChart(filepath.Join(dir, "load-"+name), chart{
			title: title, x: "bottom failure rate (%)", y: "bottom load / top calls",
			series: load, logY: true,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func writePartialCSV(path string, rs []PartialResult) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"tiers", "chain", "kind", "rate_pct", "contender", "sent", "ok", "errors",
		"success_pct", "bottom", "refused", "bottom_per_top", "p99_ms", "max_ms", "wall_s"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	ms := func(q float64, r PartialResult) string { return f(float64(r.Quantile(q).Microseconds()) / 1e3) }
	for _, r := range rs {
		w.Write([]string{
			r.Scenario.TierName(), strconv.Itoa(r.Scenario.Tiers), string(r.Scenario.Kind),
			f(100 * r.Scenario.Rate), r.Contender,
			strconv.Itoa(r.Sent), strconv.Itoa(r.OK), strconv.Itoa(r.Errors),
			strconv.FormatFloat(100*r.Success(), 'f', 2, 64),
			strconv.FormatInt(r.Bottom(), 10), strconv.FormatInt(r.Refused, 10),
			strconv.FormatFloat(r.Load(), 'f', 4, 64),
			ms(0.99, r), ms(1, r), strconv.FormatFloat(r.Wall.Seconds(), 'f', 3, 64),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

type series struct {
	name string
	xys  plotter.XYs
}

// chart is a plain line chart: title, axis labels, a line with points per
// series, and the legend in a column to the right, where it covers no line.
type chart struct {
	title, x, y string
	series      []series
	yMin, yMax  float64 // fixed Y range when yMin < yMax
	// logY draws Y on a log scale, which a load ratio spanning 0.01 to
	// 216 needs; it falls back to linear when a value is not positive.
	logY bool
}

func writeChart(path string, c chart) error {
	p := plot.New()
	p.Title.Text = c.title
	p.X.Label.Text = c.x
	p.Add(plotter.NewGrid())
	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	positive := true
	for i, s := range c.series {
		line, points, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return fmt.Errorf("bench: chart %s: %s: %w", filepath.Base(path), s.name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Color = line.Color
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		leg.Add(s.name, line, points)
		for _, xy := range s.xys {
			positive = positive && xy.Y > 0
		}
	}
	p.X.Min, p.X.Max = 0, 100
	if c.yMin < c.yMax {
		p.Y.Min, p.Y.Max = c.yMin, c.yMax
	}
	if c.logY && positive {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.AutoRescale = true // whole decades, so every decade is labelled
		c.y += " (log scale)"
	}

	const w, h = 18 * vg.Centimeter, 10 * vg.Centimeter
	canvas := vgsvg.New(w, h)
	dc := draw.New(canvas)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	page := draw.Crop(dc, vg.Points(6), -vg.Points(6), vg.Points(6), -vg.Points(6))
	legW := leg.Rectangle(page).Size().X
	area := draw.Crop(page, 0, -(legW + vg.Points(8)), 0, 0)
	// The Y label is drawn here, not by gonum, whose layout reserves room
	// for it near the top of a log axis.
	sty := p.Y.Label.TextStyle
	labelled := draw.Crop(area, sty.FontExtents().Descent+sty.Height(c.y)+p.Y.Label.Padding, 0, 0, 0)
	p.Draw(labelled)
	data := p.DataCanvas(labelled)
	sty.Rotation += math.Pi / 2
	dc.FillText(sty, vg.Point{X: area.Min.X + sty.Height(c.y) - sty.FontExtents().Descent, Y: data.Center().Y}, c.y)
	leg.Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: area.Max.X + vg.Points(8), Y: page.Min.Y},
		Max: vg.Point{X: page.Max.X, Y: data.Max.Y},
	}})
	var buf bytes.Buffer
	if _, err := canvas.WriteTo(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
