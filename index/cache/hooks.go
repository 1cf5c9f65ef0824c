package cache

import (
	"os"
	"time"
)

// lastUseEvery is how often recorded uses reach the files' mtimes. A crash
// loses at most this much of the last-use order.
const lastUseEvery = 30 * time.Second

// hooks stand in for the file system calls the disk tier makes.
type hooks struct {
	remove       func(name string) error
	chtimes      func(name string, atime, mtime time.Time) error
	probe        func(dir string) error // why dir cannot be written, or nil
	lastUseEvery time.Duration
}

func (h *hooks) withDefaults() hooks {
	var out hooks
	if h != nil {
		out = *h
	}
	if out.remove == nil {
		out.remove = os.Remove
	}
	if out.chtimes == nil {
		out.chtimes = os.Chtimes
	}
	if out.probe == nil {
		out.probe = probeWritable
	}
	if out.lastUseEvery <= 0 {
		out.lastUseEvery = lastUseEvery
	}
	return out
}
