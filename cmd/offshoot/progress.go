package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

// runProgress draws one progress bar per variant of a run: a cell per
// phase (done '=', in progress '>', to come ' '), then the phase in
// progress or the outcome. On a terminal the lines are redrawn in place;
// elsewhere (pipes, logs, CI) a variant's line is printed again each time
// it changes.
type runProgress struct {
	w     io.Writer
	tty   bool
	lines []string // drawn last, one per variant
}

func newRunProgress(w io.Writer) *runProgress {
	p := &runProgress{w: w}
	if f, ok := w.(*os.File); ok && os.Getenv("TERM") != "dumb" {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// update draws r's variants.
func (p *runProgress) update(r *experiments.Run) {
	width := 0
	for _, v := range r.Variants {
		width = max(width, len(v.Name))
	}
	lines := make([]string, len(r.Variants))
	for i, v := range r.Variants {
		lines[i] = fmt.Sprintf("  %-*s %s %s", width, v.Name, phaseBar(v), p.outcome(v))
	}
	if p.tty {
		if len(p.lines) > 0 {
			fmt.Fprintf(p.w, "\x1b[%dA", len(p.lines))
		}
		for _, l := range lines {
			fmt.Fprintf(p.w, "\x1b[2K%s\n", l)
		}
	} else {
		for i, l := range lines {
			if i >= len(p.lines) || p.lines[i] != l {
				fmt.Fprintln(p.w, l)
			}
		}
	}
	p.lines = lines
}

// phaseBar is "[==>  ]": phases done, the one in progress, those to come.
// A finished variant shows every phase done, a failed one up to where it
// failed.
func phaseBar(v experiments.VariantRun) string {
	cur := v.PhaseIndex()
	var b strings.Builder
	b.WriteByte('[')
	for i := range experiments.Phases {
		switch {
		case v.Status == experiments.StatusSucceeded, cur >= 0 && i < cur:
			b.WriteByte('=')
		case i == cur && v.Status == experiments.StatusRunning:
			b.WriteByte('>')
		case i == cur:
			b.WriteByte('x')
		default:
			b.WriteByte(' ')
		}
	}
	b.WriteByte(']')
	return b.String()
}

// outcome is the phase in progress, or how the variant ended.
func (p *runProgress) outcome(v experiments.VariantRun) string {
	switch v.Status {
	case experiments.StatusRunning:
		if v.Phase != "" {
			return v.Phase + phaseProgress(v.Progress, !p.tty)
		}
		return "running"
	case experiments.StatusSucceeded:
		t := v.Timings
		d := time.Duration((t.Fork + t.Embed + t.Load + t.Index + t.Eval) * float64(time.Millisecond))
		return "succeeded in " + d.Round(time.Millisecond).String()
	case experiments.StatusQueued:
		return "queued"
	}
	s := string(v.Status)
	if v.Error != "" {
		s += ": " + v.Error
	}
	if p.tty && len(s) > 100 {
		s = s[:97] + "..." // one terminal line, so the redraw stays in place
	}
	return s
}

// phaseProgress is " 45% (450000/1000000 tuples, ETA 1m20s)" for a phase
// that counts, "" for one that does not. coarse (off a terminal, where
// every change is a new line) gives only the percentage in steps of 10.
func phaseProgress(p *experiments.PhaseProgress, coarse bool) string {
	if p == nil || p.Total <= 0 {
		return ""
	}
	if coarse {
		return fmt.Sprintf(" %d%%", int(10*p.Fraction())*10)
	}
	s := fmt.Sprintf(" %3.0f%% (%d/%d %s", 100*p.Fraction(), p.Done, p.Total, p.Unit)
	if p.ETASeconds != nil {
		s += ", ETA " + (time.Duration(*p.ETASeconds) * time.Second).String()
	}
	return s + ")"
}
