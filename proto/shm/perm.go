package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// PermissionError is what Open returns when the process may not read a
// feed file: it names the group (or user) the file admits, so an operator
// knows which entitlement a reader lacks. It wraps fs.ErrPermission.
type PermissionError struct {
	Path  string
	Mode  os.FileMode // permission bits of the file
	UID   int
	GID   int
	User  string // owner's name, or the uid in decimal
	Group string // group's name, or the gid in decimal
	Err   error  // the error of the open (EACCES)
}

func (e *PermissionError) Error() string {
	need := "you need group " + e.Group
	if e.Mode&0o040 == 0 {
		// The group may not read either: only the owner can.
		need = "you need to run as user " + e.User
	}
	return fmt.Sprintf("open shm %s: permission denied: %s (file mode %04o, owner %s, group %s)",
		e.Path, need, uint32(e.Mode), e.User, e.Group)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// permissionError builds the PermissionError for path after err (EACCES
// or EPERM); it returns nil when err is something else.
func permissionError(path string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return nil
	}
	fi, serr := os.Stat(path)
	if serr != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	e := &PermissionError{Path: path, Mode: fi.Mode().Perm(), UID: int(st.Uid), GID: int(st.Gid), Err: err,
		User: strconv.Itoa(int(st.Uid)), Group: strconv.Itoa(int(st.Gid))}
	if u, err := user.LookupId(e.User); err == nil {
		e.User = u.Username
	}
	if g, err := user.LookupGroupId(e.Group); err == nil {
		e.Group = g.Name
	}
	return e
}

// LookupGroup returns the gid of a group given by name or as a number.
func LookupGroup(group string) (int, error) {
	if g, err := user.LookupGroup(group); err == nil {
		return strconv.Atoi(g.Gid)
	}
	gid, err := strconv.Atoi(group)
	if err != nil || gid < 0 {
		return 0, fmt.Errorf("look up group %q: no such group", group)
	}
	return gid, nil
}
