package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/manifest"
)

// progress reports index builds (it is an image.Progress): bars on a
// terminal, a few plain lines otherwise. Layers whose index is already
// cached report nothing.
type progress struct {
	out  io.Writer     // nil: report nothing
	bars *mpb.Progress // nil unless out is a terminal
}

// plainProgressMin is the smallest layer whose build is reported without a
// terminal: smaller ones take a moment and would only clutter logs.
const plainProgressMin = 16 << 20

func newProgress(out io.Writer) *progress {
	p := &progress{out: out}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bars = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return p
}

// layerProgress reports one layer's build; its methods are safe to call on
// a layer that never starts building.
type layerProgress struct {
	p     *progress
	label string
	start time.Time

	mu       sync.Mutex
	bar      *mpb.Bar
	started  bool
	lastStep int64 // plain output: last quarter printed
	total    int64
}

// Layer starts the report of layer i of n.
func (p *progress) Layer(i, n int, l manifest.Layer) image.LayerProgress {
	label := fmt.Sprintf("layer %d/%d %s (%s)", i+1, n, shortDigest(l.Digest.String()), l.Format)
	return &layerProgress{p: p, label: label}
}

// Update reports compressed bytes consumed by the build.
func (lp *layerProgress) Update(done, total int64) {
	if lp.p.out == nil || (lp.p.bars == nil && total < plainProgressMin) {
		return
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if !lp.started {
		lp.started, lp.start, lp.total = true, time.Now(), total
		if lp.p.bars != nil {
			lp.bar = lp.p.bars.AddBar(total,
				mpb.PrependDecorators(decor.Name(lp.label, decor.WCSyncSpaceR)),
				mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.Percentage(decor.WCSyncSpace)),
			)
		} else {
			fmt.Fprintf(lp.p.out, "indexing %s, %s\n", lp.label, humanSize(total))
		}
	}
	if lp.bar != nil {
		lp.bar.SetCurrent(done)
		return
	}
	if total > 0 {
		if step := done * 4 / total; step > lp.lastStep && step < 4 {
			lp.lastStep = step
			fmt.Fprintf(lp.p.out, "indexing %s: %d%%\n", lp.label, step*25)
		}
	}
}

// Done ends the report.
func (lp *layerProgress) Done(err error) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if !lp.started {
		return
	}
	if lp.bar != nil {
		if err != nil {
			lp.bar.Abort(false)
		} else {
			lp.bar.SetTotal(-1, true)
		}
		return
	}
	if err == nil {
		fmt.Fprintf(lp.p.out, "indexed %s in %s\n", lp.label, time.Since(lp.start).Round(10*time.Millisecond))
	}
}

func (p *progress) wait() {
	if p.bars != nil {
		p.bars.Wait()
	}
}
