package web

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/offshootdb/offshoot/experiments"
)

// Chart sizes. An SVG is ChartWidth × ChartHeight points; a PNG is drawn
// at 96 dpi, so ChartWidth × ChartHeight points is 800 × 480 pixels.
const (
	ChartWidth  vg.Length = 600
	ChartHeight vg.Length = 360
	// PNGDPI is the resolution of PNG charts.
	PNGDPI = 96
)

// Colours of the charts (colour-blind safe Okabe–Ito palette).
var (
	colBlue   = color.RGBA{0, 114, 178, 255}
	colOrange = color.RGBA{230, 159, 0, 255}
	colGreen  = color.RGBA{0, 158, 115, 255}
	colRed    = color.RGBA{213, 94, 0, 255}
	colGrey   = color.RGBA{120, 120, 120, 255}
	palette   = []color.Color{colBlue, colOrange, colGreen, color.RGBA{204, 121, 167, 255}, color.RGBA{86, 180, 233, 255}, color.RGBA{240, 228, 66, 255}, colGrey}
)

// ComparisonChart plots B − A for every measure of a comparison: a bar
// per measure with its bootstrap confidence interval as an error bar and
// a "*" above (or below) the measures whose difference is significant.
func ComparisonChart(c *experiments.RunComparison) (*plot.Plot, error) {
	if c == nil || c.Comparison == nil || len(c.Comparison.Measures) == 0 {
		return nil, fmt.Errorf("comparison chart: %w", ErrNoData)
	}
	ms := c.Comparison.Measures
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s vs %s: mean difference (B − A) with %.0f%% CI", c.B, c.A, 100*(1-c.Comparison.Alpha))
	p.Y.Label.Text = "Δ (B − A)"
	deltas := make(plotter.Values, len(ms))
	errs := make(errorPoints, len(ms))
	var marks plotter.XYLabels
	names := make([]string, len(ms))
	lo, hi := 0.0, 0.0
	for i, m := range ms {
		names[i] = m.Measure
		deltas[i] = m.Delta
		errs[i] = errorPoint{x: float64(i), y: m.Delta, low: m.Delta - m.CILow, high: m.CIHigh - m.Delta}
		lo, hi = math.Min(lo, m.CILow), math.Max(hi, m.CIHigh)
	}
	pad := (hi - lo) * 0.12
	if pad == 0 {
		pad = 0.01
	}
	for i, m := range ms {
		if !m.Significant {
			continue
		}
		y := m.CIHigh + pad/2
		if m.Delta < 0 {
			y = m.CILow - pad
		}
		marks.XYs = append(marks.XYs, plotter.XY{X: float64(i), Y: y})
		marks.Labels = append(marks.Labels, "*")
	}
	bars, err := plotter.NewBarChart(deltas, vg.Points(28))
	if err != nil {
		return nil, fmt.Errorf("comparison chart: %w", err)
	}
	bars.Color = colBlue
	bars.LineStyle.Width = 0
	eb, err := plotter.NewYErrorBars(errs)
	if err != nil {
		return nil, fmt.Errorf("comparison chart: %w", err)
	}
	eb.LineStyle.Width = vg.Points(1.2)
	eb.CapWidth = vg.Points(10)
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Color = colGrey
	p.Add(plotter.NewGrid(), bars, eb, zero)
	if len(marks.XYs) > 0 {
		lb, err := plotter.NewLabels(marks)
		if err != nil {
			return nil, fmt.Errorf("comparison chart: %w", err)
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(16)
			lb.TextStyle[i].Color = colRed
			lb.TextStyle[i].XAlign = draw.XCenter
		}
		p.Add(lb)
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = lo-pad, hi+pad
	p.Legend.Top = true
	return p, nil
}

// errorPoints are bars' tops with asymmetric error extents, for
// plotter.NewYErrorBars.
type errorPoints []errorPoint

type errorPoint struct{ x, y, low, high float64 }

func (e errorPoints) Len() int                        { return len(e) }
func (e errorPoints) XY(i int) (float64, float64)     { return e[i].x, e[i].y }
func (e errorPoints) YError(i int) (float64, float64) { return e[i].low, e[i].high }

// SweepChart plots the variants of a sweep on the recall–QPS plane, with
// the Pareto front (no other point has both higher recall and higher QPS)
// drawn as a line through its points.
func SweepChart(pts []experiments.SweepPoint) (*plot.Plot, error) {
	if len(pts) == 0 {
		return nil, fmt.Errorf("sweep chart: %w", ErrNoData)
	}
	p := plot.New()
	p.Title.Text = "Recall vs QPS (Pareto front)"
	p.X.Label.Text = "recall@k against exact search"
	p.Y.Label.Text = "queries per second"
	var all, front plotter.XYs
	var labels plotter.XYLabels
	for _, pt := range pts {
		xy := plotter.XY{X: pt.Recall, Y: pt.QPS}
		all = append(all, xy)
		labels.XYs = append(labels.XYs, xy)
		labels.Labels = append(labels.Labels, pt.Variant)
		if pt.Pareto {
			front = append(front, xy)
		}
	}
	sort.Slice(front, func(i, j int) bool { return front[i].X < front[j].X })
	sc, err := plotter.NewScatter(all)
	if err != nil {
		return nil, fmt.Errorf("sweep chart: %w", err)
	}
	sc.Color = colBlue
	sc.Radius = vg.Points(3.5)
	p.Add(plotter.NewGrid(), sc)
	p.Legend.Add("variant", sc)
	if len(front) > 0 {
		ln, pts, err := plotter.NewLinePoints(front)
		if err != nil {
			return nil, fmt.Errorf("sweep chart: %w", err)
		}
		ln.Color, ln.Width = colOrange, vg.Points(2)
		pts.Color, pts.Radius = colOrange, vg.Points(4.5)
		p.Add(ln, pts)
		p.Legend.Add("Pareto front", ln, pts)
	}
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, fmt.Errorf("sweep chart: %w", err)
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].Font.Size = vg.Points(8)
	}
	lb.Offset = vg.Point{X: vg.Points(5), Y: vg.Points(3)}
	p.Add(lb)
	p.Legend.Top = true
	padRange(&p.X.Min, &p.X.Max, 0.08)
	padRange(&p.Y.Min, &p.Y.Max, 0.12)
	return p, nil
}

// EfSearchChart plots ANN recall against ef_search for the HNSW variants
// of a run, a line per index configuration (embedder, m,
// ef_construction, vector type, quantization and rerank). It needs at least one variant with ef_search and an
// ANN recall.
func EfSearchChart(r *experiments.Run) (*plot.Plot, error) {
	lines := map[string]plotter.XYs{}
	for _, v := range r.Variants {
		if v.Status != experiments.StatusSucceeded || v.ANNRecall == nil || v.Spec.Search.EfSearch == 0 || v.Spec.Index == nil {
			continue
		}
		key := fmt.Sprintf("%s m=%d efc=%d", v.Spec.Embedder, v.Spec.Index.M, v.Spec.Index.EfConstruction)
		if v.Spec.VectorType != "" && v.Spec.VectorType != experiments.VectorTypeVector {
			key += " " + v.Spec.VectorType
		}
		if v.Spec.Quantization == experiments.QuantizationBinary {
			key += " binary"
			if v.Spec.Search.Rerank > 0 {
				key += fmt.Sprintf(" rerank=%d", v.Spec.Search.Rerank)
			}
		}
		lines[key] = append(lines[key], plotter.XY{X: float64(v.Spec.Search.EfSearch), Y: *v.ANNRecall})
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("ef_search chart: %w", ErrNoData)
	}
	p := plot.New()
	p.Title.Text = "Recall vs ef_search"
	p.X.Label.Text = "hnsw.ef_search"
	p.Y.Label.Text = "recall@k against exact search"
	p.Add(plotter.NewGrid())
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		xys := lines[k]
		sort.Slice(xys, func(a, b int) bool { return xys[a].X < xys[b].X })
		ln, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("ef_search chart: %w", err)
		}
		c := palette[i%len(palette)]
		ln.Color, ln.Width, pts.Color = c, vg.Points(1.5), c
		p.Add(ln, pts)
		p.Legend.Add(k, ln, pts)
	}
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.YOffs = vg.Points(-40)
	padRange(&p.Y.Min, &p.Y.Max, 0.08)
	return p, nil
}

// TrendChart plots one metric of a schedule's runs over time: a line per
// variant, runs flagged as regressions marked with a red triangle and the
// accepted baseline with a green ring.
func TrendChart(history []experiments.HistoryPoint, metric string) (*plot.Plot, error) {
	variants := map[string]plotter.XYs{}
	var regress, base plotter.XYs
	for _, h := range history {
		x := float64(h.Time.Unix())
		for v, ms := range h.Metrics {
			y, ok := ms[metric]
			if !ok {
				continue
			}
			variants[v] = append(variants[v], plotter.XY{X: x, Y: y})
			if h.Regression {
				regress = append(regress, plotter.XY{X: x, Y: y})
			}
			if h.Baseline {
				base = append(base, plotter.XY{X: x, Y: y})
			}
		}
	}
	if len(variants) == 0 {
		return nil, fmt.Errorf("trend chart of %s: %w", metric, ErrNoData)
	}
	p := plot.New()
	p.Title.Text = metric + " per scheduled run"
	p.Y.Label.Text = metric
	p.X.Label.Text = "run time (UTC)"
	p.X.Tick.Marker = plot.TimeTicks{Format: "01-02\n15:04"}
	p.Add(plotter.NewGrid())
	names := make([]string, 0, len(variants))
	for v := range variants {
		names = append(names, v)
	}
	sort.Strings(names)
	for i, v := range names {
		ln, pts, err := plotter.NewLinePoints(variants[v])
		if err != nil {
			return nil, fmt.Errorf("trend chart: %w", err)
		}
		c := palette[i%len(palette)]
		ln.Color, ln.Width, pts.Color = c, vg.Points(1.5), c
		p.Add(ln, pts)
		p.Legend.Add(v, ln, pts)
	}
	if len(base) > 0 {
		sc, err := plotter.NewScatter(base)
		if err != nil {
			return nil, fmt.Errorf("trend chart: %w", err)
		}
		sc.Shape, sc.Color, sc.Radius = draw.RingGlyph{}, colGreen, vg.Points(6)
		p.Add(sc)
		p.Legend.Add("baseline", sc)
	}
	if len(regress) > 0 {
		sc, err := plotter.NewScatter(regress)
		if err != nil {
			return nil, fmt.Errorf("trend chart: %w", err)
		}
		sc.Shape, sc.Color, sc.Radius = draw.TriangleGlyph{}, colRed, vg.Points(6)
		p.Add(sc)
		p.Legend.Add("regression", sc)
	}
	p.Legend.Top = true
	padRange(&p.Y.Min, &p.Y.Max, 0.1)
	return p, nil
}

func padRange(lo, hi *float64, frac float64) {
	d := (*hi - *lo) * frac
	if d == 0 {
		d = math.Max(math.Abs(*hi)*frac, 0.01)
	}
	*lo -= d
	*hi += d
}

// WriteChart writes p as "svg" or "png" (ChartWidth × ChartHeight; PNG at
// PNGDPI).
func WriteChart(w io.Writer, p *plot.Plot, format string) error {
	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		c = vgsvg.New(ChartWidth, ChartHeight)
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(ChartWidth, ChartHeight), vgimg.UseDPI(PNGDPI))}
	default:
		return fmt.Errorf("chart format %q: want svg or png: %w", format, ErrFormat)
	}
	p.Draw(draw.New(c))
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

// SaveChart writes p to path, as PNG or SVG by the path's extension. The
// CLI calls it (e.g. `offshoot run compare A B --plot out.svg`).
func SaveChart(path string, p *plot.Plot) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	var buf bytes.Buffer
	if err := WriteChart(&buf, p, format); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("save chart: %w", err)
	}
	return nil
}

// inlineSVG renders p as an SVG element to embed in a page: without the
// XML prolog, with an accessible name.
func inlineSVG(p *plot.Plot, id, label string) (string, error) {
	var buf bytes.Buffer
	if err := WriteChart(&buf, p, "svg"); err != nil {
		return "", err
	}
	s := buf.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", fmt.Errorf("chart: no svg element in output")
	}
	s = s[i:]
	attrs := fmt.Sprintf(`<svg id="%s" class="chart" role="img" aria-label="%s"`, htmlAttr(id), htmlAttr(label))
	return attrs + strings.TrimPrefix(s, "<svg"), nil
}

func htmlAttr(s string) string {
	r := strings.NewReplacer(`&`, "&amp;", `"`, "&quot;", `<`, "&lt;", `>`, "&gt;")
	return r.Replace(s)
}
