// Package rerequest is a MoldUDP64 retransmission (re-request) client.
//
// When a range of sequence numbers is missing on every live line, the
// handler asks a re-request server for it: a 20-byte request packet
// (session, first sequence number, message count; see moldudp64.Request)
// sent by unicast UDP. The server answers with ordinary downstream MoldUDP64
// packets sent back to the requesting socket.
//
// A Client is driven from the receive thread without blocking: Want names
// the range to fill, Poll reads answers (handing the valid ones to the
// caller) and sends, resends or continues requests, and Progress tells it
// how far the caller's in-order stream has got. It
//
//   - never asks for more than MaxRequestMessages at once, nor more than
//     the sockets' receive buffer holds when the answer comes a packet per
//     message (AnswerMessages; RequestMessages), and keeps asking until the
//     range is filled (answers may carry fewer messages than asked);
//   - resends after Timeout (doubled on each retry), or once an answer
//     without the first message asked has gone quiet (it starts later than
//     asked), Retries times per server, then fails over to the next server
//     in order (wrapping round), and reports failure once every server was
//     tried; a range starts with the server that filled the last range
//     that failed over, so a server down is not waited for at every range;
//   - asks, while the wanted range is filled, for up to MaxAhead ranges
//     past it that the caller names (Ahead: the holes it holds packets
//     past), each with its own request in flight, timeout and retries,
//     the messages asked and not answered at most RequestMessages in
//     all; their answers are handed on for the caller to hold, and Want
//     goes on with the request in flight of a range asked ahead;
//   - sends at most RequestsPerSecond requests (a token bucket);
//   - drops and counts answers of another session, for ranges it never
//     asked, malformed packets (moldudp64.Parse: a count claiming more
//     messages than the packet carries is ErrOverrun), late answers
//     whose messages the caller already has, and answers to requests made
//     before Forget (a sequence restart: BeforeRestart); the last answer
//     dropped as bad is described for the caller's log (LastBad).
//
// Each server has its own socket, not connected: answers are taken from the
// server's IP address on any port (a server may answer from another port
// than the one asked; with Config.ServerPort only from the port asked),
// and datagrams from any other source are dropped and counted
// (WrongSource). After Forget each server is asked from a new
// socket, on a port of no socket closed in the last 10 minutes, since a
// late answer of the old numbering may carry the sequence numbers asked
// after it; one that cannot be opened leaves the
// request unsent (it times out as unanswered), counted (OpenErrors) and
// reported once per run of failures (OpenError, for the caller to log).
// A request whose write fails for a reason that stays (no route to the
// server, a firewall) spends its server's tries at once (the next Poll
// fails over); one whose write may pass soon (the send buffer full:
// EAGAIN) is written again at the next Poll, then at doubling intervals up
// to 10 ms, until its timeout (NextDue says when). Each failure is
// counted (SendErrors) and reported once per run of a server's failures
// (SendError, for the caller to log).
// Poll allocates nothing.
package rerequest
