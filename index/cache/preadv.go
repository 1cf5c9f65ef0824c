package cache

import (
	"errors"

	"golang.org/x/sys/unix"
)

// vectorReaderAt reads into several buffers from one offset, as preadv(2)
// does: a read lands in the caller's buffer, with the edges of the blocks
// around it in scratch space, in one system call.
type vectorReaderAt interface {
	ReadvAt(bufs [][]byte, off int64) (int, error)
}

// fdReader is a vectorReaderAt over a file descriptor the caller keeps open.
type fdReader int

func (fd fdReader) ReadvAt(bufs [][]byte, off int64) (int, error) {
	for {
		n, err := unix.Preadv(int(fd), bufs, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return max(n, 0), err
	}
}
