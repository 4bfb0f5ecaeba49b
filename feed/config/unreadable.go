package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// unreadable adds to err, an open of path refused with EACCES, what
// refused it: the first directory above path that this process may not
// enter, or else the file, with its mode and owner and this process's
// uid, gid and groups, and what the unit's install does. Before, a feed
// or password file the handler's user may not read said only 'open PATH:
// permission denied', exit 78, whoever ran it. Other errors come back
// unchanged.
func unreadable(path string, err error) error {
	if !errors.Is(err, unix.EACCES) {
		return err
	}
	abs, aerr := filepath.Abs(path)
	if aerr != nil {
		return err
	}
	what, verb := abs, "read"
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if unix.Faccessat(unix.AT_FDCWD, dir, unix.X_OK, unix.AT_EACCESS) != nil {
			what, verb = dir, "enter" // the last one found, the nearest to /, refuses first
		}
		if dir == "/" {
			break
		}
	}
	fi, serr := os.Stat(what)
	if serr != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	groups, _ := unix.Getgroups()
	return fmt.Errorf("%w: this process (uid %d, gid %d, groups %v) may not %s %s (mode %04o, owner uid %d, group gid %d): give the handler's user read access to the file and search access to the directories above it (the unit's install makes /etc/feedhandler 0750 and the feed file 0640, both of group feedhandler: deploy/feedhandler@.service)",
		err, os.Geteuid(), os.Getegid(), groups, verb, what, fi.Mode().Perm(), st.Uid, st.Gid)
}
