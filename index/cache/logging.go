package cache

import (
	"log/slog"
	"sync/atomic"
)

// warnOnce logs its first message as a warning and the rest at debug level:
// a lasting condition (a full disk, files owned by someone else) deserves
// one line, not one per span.
type warnOnce struct {
	logger *slog.Logger
	warned atomic.Bool
}

func (w *warnOnce) log(msg string, args ...any) {
	if w.warned.CompareAndSwap(false, true) {
		w.logger.Warn(msg, args...)
		return
	}
	w.logger.Debug(msg, args...)
}
