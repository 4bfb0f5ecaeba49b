package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// syncFile flushes a file (or directory) to the disk: f.Sync, fsync(2)
// (a test's records what it syncs).
var syncFile = func(f interface{ Sync() error }) error { return f.Sync() }

// syncDir flushes the directory of path (the entries of the files made
// in it) to the disk. A directory that cannot be opened by that name
// (moved or removed since: the capture writes on in its file) is passed
// over: no entry of it to flush there.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil
	}
	err = syncFile(d)
	return errors.Join(err, d.Close())
}

// retire flushes the file the capture went on from, name, to the disk
// (its frames and its end frame, unless it was found deleted: sync false),
// then the directory (the next file's entry), and closes it; on a
// goroutine of its own, so that the drainer goes on writing the next file
// while the disk takes what the page cache holds of this one (seconds of
// the lines' traffic); one at a time: a rotation waits for the one before
// (the disk that far behind), Close for the last. Without it a power loss
// (or a kernel crash) after a rotation lost what the kernel had not yet
// written back of the files before (by default up to 30 s of them,
// vm.dirty_expire_centisecs), possibly inside a record, while the next
// file went on: replay --feed refused it after the one cut.
func (c *Capture) retire(f file, name string, sync bool) {
	c.waitRetired()
	c.retiring.Add(1)
	go func() {
		defer c.retiring.Done()
		var err error
		if sync {
			err = syncFile(f)
			if err == nil {
				err = syncDir(name)
			}
		}
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err != nil {
			c.retireErr = fmt.Errorf("sync and close capture %s: %w", name, err)
		}
	}()
}

// waitRetired waits for the file retired last (retire), and logs its
// failure: what the file holds may not survive a power loss.
func (c *Capture) waitRetired() {
	c.retiring.Wait()
	if c.retireErr != nil {
		c.log.Error().Err(c.retireErr).Msg("capture: the previous file was not flushed to the disk whole; what it holds may not survive a power loss")
		c.retireErr = nil
	}
}
