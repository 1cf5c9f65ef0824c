package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// result is one row of the targets table: a ratio measured in this run and
// the target it is held against.
type result struct {
	id     string  // P1..P8
	what   string  // what was compared
	value  string  // imgfs figure
	base   string  // baseline figure ("" when the target is absolute)
	ratio  float64 // NaN when not applicable
	target string  // e.g. "≤ 0.10"
	status string  // met, NOT met, error, info
}

// limit is a target on a ratio or absolute figure.
type limit struct {
	atMost bool // true: value must be ≤ bound; false: ≥ bound
	bound  float64
}

func atMost(v float64) limit  { return limit{atMost: true, bound: v} }
func atLeast(v float64) limit { return limit{atMost: false, bound: v} }

func (l limit) String() string {
	if l.atMost {
		return fmt.Sprintf("≤ %s", trimFloat(l.bound))
	}
	return fmt.Sprintf("≥ %s", trimFloat(l.bound))
}

func (l limit) status(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case l.atMost && v <= l.bound, !l.atMost && v >= l.bound:
		return "met"
	default:
		return "**NOT met**"
	}
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// addRatio records a compared measurement.
func (b *bench) addRatio(id, what, value, base string, ratio float64, l limit) {
	b.results = append(b.results, result{id: id, what: what, value: value, base: base, ratio: ratio, target: l.String(), status: l.status(ratio)})
}

// addInfo records a figure with no target of its own.
func (b *bench) addInfo(id, what, value, base string, ratio float64) {
	b.results = append(b.results, result{id: id, what: what, value: value, base: base, ratio: ratio, target: "—", status: "info"})
}

// addError records a measurement that could not be made, and why.
func (b *bench) addError(id, what string, err error) {
	msg := strings.ReplaceAll(err.Error(), "|", "\\|")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	b.results = append(b.results, result{id: id, what: what, value: "error: " + msg, ratio: math.NaN(), target: "", status: "**error**"})
}

// detail appends markdown to the details section.
func (b *bench) detail(format string, args ...any) {
	b.details = append(b.details, fmt.Sprintf(format, args...))
}

func (b *bench) writeReport(path string, started time.Time) error {
	var w strings.Builder
	fmt.Fprintf(&w, "# imgfs benchmark report\n\n")
	fmt.Fprintf(&w, "Run %s, %s wall time. Command: `make bench` (Go micro-benchmarks, then scripts/bench.sh, which runs `%s`).\n\n",
		started.UTC().Format(time.RFC3339), time.Since(started).Round(time.Second), b.command)
	fmt.Fprintf(&w, "## Machine\n\n")
	for _, f := range b.facts {
		fmt.Fprintf(&w, "- %s\n", f)
	}
	fmt.Fprintf(&w, "- load average at start: %s; at end: %s\n", b.loadStart, loadAverage())
	fmt.Fprintf(&w, "\n## Images\n\n| image | layers | files | uncompressed | compressed | ratio |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, name := range b.imageOrder {
		im := b.images[name]
		comps := []string{}
		for _, l := range im.layers {
			comps = append(comps, string(l.compression))
		}
		fmt.Fprintf(&w, "| %s | %d (%s) | %d | %s | %s | %.2f |\n", im.name, len(im.layers), strings.Join(comps, ", "),
			len(im.files), mib(im.uncompressed()), mib(im.compressed()), float64(im.compressed())/float64(im.uncompressed()))
	}
	fmt.Fprintf(&w, "\n## Targets\n\nRatios are imgfs / baseline, measured in this run; times are medians of the repeats listed in the details.\n\n")
	fmt.Fprintf(&w, "| # | measurement | imgfs | baseline | ratio | target | status |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	sort.SliceStable(b.results, func(i, j int) bool { return b.results[i].id < b.results[j].id })
	for _, r := range b.results {
		ratio := "—"
		if !math.IsNaN(r.ratio) {
			ratio = fmt.Sprintf("%.3f", r.ratio)
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.id, r.what, r.value, r.base, ratio, r.target, r.status)
	}
	fmt.Fprintf(&w, "\n## Details\n\n%s\n", strings.Join(b.details, "\n"))
	fmt.Fprintf(&w, "\n## Phases\n\n")
	for _, p := range b.phases {
		fmt.Fprintf(&w, "- %s\n", p)
	}
	if err := os.WriteFile(path, []byte(w.String()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
