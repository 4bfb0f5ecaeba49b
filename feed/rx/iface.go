package rx

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoInterface is wrapped by LookupInterface and Open when a line names a
// network interface that this host (its network namespace) does not have.
// It is a configuration error, never a reason to try another backend.
var ErrNoInterface = errors.New("no such network interface")

// NoInterfaceError says which interface is missing and which ones exist.
type NoInterfaceError struct {
	Name string
	Have []string // interfaces of this network namespace, in index order
}

// Error formats `no interface "ens1f0" on this host (have: lo, eth0)`.
func (e *NoInterfaceError) Error() string {
	return fmt.Sprintf("no interface %q on this host (have: %s)", e.Name, strings.Join(e.Have, ", "))
}

// Is reports ErrNoInterface.
func (e *NoInterfaceError) Is(target error) bool { return target == ErrNoInterface }

// LookupInterface returns the interface called name in the caller's network
// namespace. When there is none the error is a *NoInterfaceError listing the
// interfaces that exist.
func LookupInterface(name string) (*net.Interface, error) {
	ifi, err := net.InterfaceByName(name)
	if err == nil {
		return ifi, nil
	}
	all, lerr := net.Interfaces()
	if lerr != nil {
		return nil, fmt.Errorf("look up interface %q: %w", name, errors.Join(err, lerr))
	}
	have := make([]string, len(all))
	for i, ifi := range all {
		have[i] = ifi.Name
	}
	if slices.Contains(have, name) { // it exists, the lookup failed for another reason
		return nil, fmt.Errorf("look up interface %q: %w", name, err)
	}
	return nil, &NoInterfaceError{Name: name, Have: have}
}

// linkNotifications opens a non-blocking rtnetlink socket in the calling
// thread's network namespace, joined to the link notifications
// (RTMGRP_LINK: RTM_NEWLINK on a change of a device, its address
// included, RTM_DELLINK on its deletion). Joining needs no capability.
func linkNotifications() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("rtnetlink: socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("rtnetlink: join RTMGRP_LINK: %w", err)
	}
	return fd, nil
}
