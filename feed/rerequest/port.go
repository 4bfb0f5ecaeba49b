package rerequest

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// portTries is how many sockets reopen opens at most to find a port that
// is not in quarantine (portQuarantine).
const portTries = 16

// portQuarantine is how long the port of a socket closed at a Forget is
// not taken by a server's new socket: longer than any answer to a request
// made from it can be on its way (the socket was set aside at the Forget
// before, so its requests are older still). A port closed longer ago is
// taken again: kept for the client's life, every port of the ephemeral
// range was eventually refused, and re-request failed for good.
const portQuarantine = 10 * time.Minute

// closedMemory bounds the ports remembered closed (Client.closed): more
// sockets closed within portQuarantine (restarts every second or so with
// a few servers) forget the oldest.
const closedMemory = 1024

type closedPort struct {
	port uint16
	at   int64
}

// quarantined reports whether port is one of a socket closed less than
// portQuarantine ago.
func (c *Client) quarantined(port uint16) bool {
	for i := range min(c.closedN, closedMemory) {
		if e := c.closed[i]; e.port == port && c.seen-e.at < int64(portQuarantine) {
			return true
		}
	}
	return false
}

// reopen opens server's new socket after Forget, bound to a port that is
// not one of a socket closed less than portQuarantine before: a socket
// closed at a Forget (the one set aside at the Forget before) has a port
// the kernel may give again, and a late answer to a request made from it,
// two restarts back or more, would come to the new socket as an answer of
// the new numbering (the session name is the same, its sequence numbers
// may be the ones asked). The sockets given such a port stay open until
// one with another port is found, so that the kernel picks another. A
// failure (no socket, or no such port in portTries) is counted
// (OpenErrors) and kept for OpenError, the first of the server's run.
func (c *Client) reopen(server int) bool {
	c.reopening = server
	err := c.open(c.openNew)
	if err != nil {
		if c.fds[server] >= 0 {
			unix.Close(c.fds[server]) // opened, but open's wrapper failed
			c.fds[server] = -1
		}
		c.Stats.OpenErrors++
		c.openErrs.fail(server, err)
		return false
	}
	c.openErrs.end(server)
	return true
}

// openNewSocket is reopen's work, for server c.reopening.
func (c *Client) openNewSocket() error {
	server := c.reopening
	var used [portTries]int
	n := 0
	defer func() {
		for _, fd := range used[:n] {
			unix.Close(fd)
		}
	}()
	for n < portTries {
		fd, port, err := c.open4(c.cfg.Servers[server])
		if err != nil {
			return err
		}
		if !c.quarantined(port) {
			c.fds[server], c.ports[server] = fd, port
			return nil
		}
		used[n] = fd
		n++
	}
	return fmt.Errorf("no local port but those of sockets closed less than %v ago in %d sockets", portQuarantine, portTries)
}
