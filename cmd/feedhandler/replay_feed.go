package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
)

// unknownMarker is the skipped_by_reason of marker frames replay --feed
// does not know.
const unknownMarker = "unknown marker"

// arbitratedReport is what replay --feed adds to its report.
type arbitratedReport struct {
	Feed      string    `json:"feed"`      // the feed file
	Datagrams [2]uint64 `json:"datagrams"` // offered to the arbiter, by line (A, B)
	Other     uint64    `json:"other"`     // datagrams to no line of the feed (or from another source than the line's)
	// Unmatched says what the other datagrams were, against the feed's
	// lines, when a line got none or most went to no line.
	Unmatched *unmatchedReport `json:"unmatched,omitempty"`
	Skipped   uint64           `json:"skipped"` // frames that are not whole IPv4/UDP datagrams
	// SkippedBy is Skipped by reason: pcap.Reason's names (truncated, not
	// IPv4, IPv4 fragment, ...) as replay without --feed reports them, and
	// "unknown marker" for a marker frame this replay does not know (a
	// later handler's).
	SkippedBy map[string]uint64 `json:"skipped_by_reason,omitempty"`
	skipped   string            // SkippedBy for the text report, in the same order
	Resets    uint64            `json:"resets"`    // session changes: the books were emptied, as the handler empties them
	Filtered  uint64            `json:"filtered"`  // messages the feed's symbols left out
	Delivered uint64            `json:"delivered"` // messages the arbiter delivered in order
	// Marked counts the datagrams whose batch marks (package capture)
	// said where the live handler found its lines empty; the others
	// (every datagram of a capture without marks) were modelled
	// (handler.ReplayPollGap).
	Marked uint64 `json:"marked"`
	// Failed counts the runs of receive calls that failed with nothing
	// read (a capture's marker frames), replayed where the live handler
	// advanced its arbiter.
	Failed uint64 `json:"failed_receives"`
	// CaptureLost counts the datagrams the capture said it left out (its
	// ring full, a failed write): a gap there may be the capture's, not
	// the feed's.
	CaptureLost uint64 `json:"capture_lost"`
	// CaptureEnd says how the capture's last frame ends it: "stopped"
	// (the handler stopped) or "next_file" (it went on in the next file,
	// capture.rotate_size), the end's marker frame; "cut" when a capture
	// with batch marks has none last (the handler killed or crashed, the
	// file still written, or full): what the handler received after its
	// last frame is not in it. "" for a capture without batch marks,
	// which cannot say.
	CaptureEnd string `json:"capture_end"`
	// CaptureStart says where the first file replayed stands in its
	// capture, as its first frame says (capture.Begin): "first" the
	// capture's first file; "continued" a later one, whose files before
	// (FilesBefore of them, the one just before it named PreviousFile)
	// were not given: the books replayed lack what they held (the orders
	// they added, a snapshot or re-requests begun in them), its start a
	// gap. "" for a capture whose files do not say (an older handler's).
	CaptureStart string `json:"capture_start"`
	FilesBefore  uint64 `json:"capture_files_before,omitempty"`
	PreviousFile string `json:"capture_previous_file,omitempty"`
	// LiveRecovery is what the live handler's recovery brought, as the
	// capture records it: the re-request answers, replayed where the
	// handler received them, and the snapshots, rebuilt from the
	// capture's messages where the handler rebuilt the books (a capture of
	// an older handler does not hold them: a gap a snapshot repaired is
	// one there).
	LiveRecovery liveRecovery `json:"live_recovery"`
	// Reassembled counts the datagrams reassembled from IPv4 fragments
	// (pcap.Stats.Reassembled), Fragments the frames they took.
	Reassembled uint64 `json:"reassembled,omitempty"`
	Fragments   uint64 `json:"fragments_reassembled,omitempty"`
}

// liveRecovery counts what a capture says the live handler's recovery
// brought (package capture: Answer, Snapshot).
type liveRecovery struct {
	Answers          uint64 `json:"rerequest_answers"`   // re-request answers received
	AnswerMessages   uint64 `json:"rerequest_messages"`  // the messages they held
	GaveUp           uint64 `json:"rerequests_given_up"` // ranges re-requested the handler gave up (declared missing)
	Snapshots        uint64 `json:"snapshots"`           // snapshots loaded (the books rebuilt)
	SnapshotMessages uint64 `json:"snapshot_messages"`   // the messages they held
	// SnapshotsReplayed: the snapshots loaded whose messages the capture
	// holds whole, the books rebuilt from them as the handler did.
	SnapshotsReplayed uint64 `json:"snapshots_replayed"`
}

// Capture starts (arbitratedReport.CaptureStart).
const (
	captureFirst     = "first"
	captureContinued = "continued"
)

// fileStart is a capture file's place in its capture (capture.Begin).
type fileStart struct{ run, index uint64 }

// Capture ends (arbitratedReport.CaptureEnd).
const (
	captureStopped  = "stopped"
	captureNextFile = "next_file"
	captureCut      = "cut"
)

// replayFeed loads the feed file of replay --feed. The feed's book section
// sets the capacities, so the flags that set them are refused beside it.
func replayFeed(fs *flag.FlagSet, path string) (*config.Config, error) {
	var clash error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-orders", "max-levels", "overflow":
			clash = fmt.Errorf("replay: --%s with --feed: the feed's book section sets the books' capacities", f.Name)
		}
	})
	if clash != nil {
		return nil, clash
	}
	fc, err := config.LoadOffline(path) // replay logs in nowhere: no snapshot password
	if err != nil {
		return nil, fmt.Errorf("replay: --feed: %w", err)
	}
	return fc, nil
}

// inputOptions are the options replay reads its input with: with --feed
// (fc), a capture's datagrams taken as the feed's receive path takes them,
// whose checksums fail too when receive.verify_checksums is false (the
// AF_XDP path's setting: such a feed's sender leaves them to offload).
func inputOptions(fc *config.Config) input.Options {
	return input.Options{NoChecksums: fc != nil && !fc.Receive.VerifyChecksums}
}

// arbitrated replays a capture's datagrams through handler.Replayer: the
// handler's own arbiter and admission, configured by the feed file.
type arbitrated struct {
	in  *input.Reader
	rp  *replayer
	r   *handler.Replayer
	fc  *config.Config
	rep arbitratedReport
	// others: the datagrams to no line, by destination and source
	others otherDatagrams
	// otherMarkers: marker frames that are no run of failed receives
	otherMarkers uint64
	end          string // the last frame's end (CaptureEnd), "" when it is none
	// The snapshot being loaded (capture.Frozen seen: the capture holds
	// its messages), its messages so far and how many.
	frozen   bool
	snapMsgs []byte
	snapN    uint64
	// more: the capture's files after the first (a rotated capture's, in
	// the order written), replayed one after another as one capture;
	// before: what the files before the current one read (pcap.Stats:
	// report adds it to the current file's); path: the current file.
	more   []string
	before pcap.Stats
	path   string
	ans    answers
	first  *input.Reader // the first file's, which replay closes

	// gzipPadding: the zero bytes after the gzip streams of the files
	// before the current one (input.Stats.GzipPadding)
	gzipPadding uint64
	// begun: the current file's first frame was read; start: its place
	// in the capture, which that frame says (nil: it does not, a file of
	// an older handler's).
	begun    bool
	start    *fileStart
	prevPath string // the file replayed before the current one
	// replayed: how many of the files given were replayed, whole or in
	// part (not one refused as the next, nor those after it)
	replayed int
}

func newArbitrated(fc *config.Config, path string, in *input.Reader, rp *replayer) (*arbitrated, error) {
	if f := in.Format(); f != input.FormatPcap && f != input.FormatPcapNG {
		return nil, fmt.Errorf("replay: --feed arbitrates a capture's lines: %s is a %s, not a pcap or pcapng capture", path, f)
	}
	a := &arbitrated{in: in, rp: rp, fc: fc, rep: arbitratedReport{Feed: fc.File}, path: path}
	apply := rp.apply
	if rp.pub != nil {
		apply = rp.applyPublish
	}
	reset := func() {
		if rp.pub != nil {
			rp.pub.Flush()
		}
		rp.bs.Reset()
		if rp.pub != nil {
			rp.pub.BooksReset()
		}
	}
	withdraw := func(loc uint16) {
		rp.bs.Withdraw(loc)
		if rp.pub != nil {
			rp.pub.Withdrawn(loc)
		}
	}
	a.r = handler.NewReplayer(handler.FromConfig(fc, zerolog.Nop()), apply, withdraw, reset)
	if in.CaptureSigfigs() == capture.FileMark {
		// The ranges the capture's re-request answers fill, read ahead:
		// the replay's arbiter holds for those, as the handler's did.
		// That reads the capture twice, which a pipe cannot be: a second
		// open of a FIFO or /dev/stdin took the rest from in (or, the
		// writer gone, waited for another for ever).
		if !regularFile(path) {
			return nil, fmt.Errorf("replay: --feed: %s is not a regular file: a handler's capture is read twice (its re-request answers ahead), which a pipe cannot be; give it as a file (gzipped or not)", path)
		}
		ans, requests, err := readAnswers(path, inputOptions(fc))
		if err != nil {
			return nil, err
		}
		a.ans = ans
		a.r.SetAnswered(func(s moldudp64.Session, rg moldudp64.Range) bool { return a.ans.covers(s, rg) })
		a.followRerequests(requests)
	}
	return a, nil
}

// followRerequests has the replay hold for the ranges the capture says
// the handler re-requested (capture.Rerequest), rather than for those its
// answers hold, when it records them (requests: a file of it has one).
func (a *arbitrated) followRerequests(requests bool) {
	if requests {
		a.r.FollowRerequests()
	}
}

// readMoreAnswers adds the re-request answers of the files after the
// first (more) to those the replay holds for: one capture's, whose
// answers may come in a file after the gap's.
func (a *arbitrated) readMoreAnswers() error {
	if a.ans == nil {
		return fmt.Errorf("replay: --feed with several files: %s has no batch marks (not a handler's capture file), so it cannot be followed by the next", a.path)
	}
	for _, p := range a.more {
		if !regularFile(p) {
			return fmt.Errorf("replay: --feed: %s is not a regular file: a handler's capture is read twice (its re-request answers ahead), which a pipe cannot be", p)
		}
		ans, requests, err := readAnswers(p, inputOptions(a.fc))
		if err != nil {
			return err
		}
		for s, rs := range ans {
			a.ans[s] = mergeRanges(append(a.ans[s], rs...))
		}
		a.followRerequests(requests)
	}
	return nil
}

// next goes on in the capture's next file (more) once the current one
// ended: only after a file that ends where the handler went on in the
// next (capture_end next_file); a file that ends otherwise (the handler
// stopped, or the file cut) is not followed by the same run's capture.
func (a *arbitrated) next() (bool, error) {
	if len(a.more) == 0 {
		return false, nil
	}
	if a.end != captureNextFile {
		end := a.end
		if end == "" {
			end = captureCut
		}
		return false, fmt.Errorf("%s ends %s, not in the next file: %s is not its continuation (replay each run's files apart)", a.path, end, a.more[0])
	}
	in, err := input.OpenOptions(a.more[0], inputOptions(a.fc))
	if err != nil {
		return false, fmt.Errorf("replay: %w", err)
	}
	if in.CaptureSigfigs() != capture.FileMark {
		in.Close()
		return false, fmt.Errorf("%s has no batch marks: not a handler's capture file, so not the continuation of %s", a.more[0], a.path)
	}
	a.gzipPadding += a.in.Stats().GzipPadding
	addStats(&a.before, a.in.CaptureStats())
	if a.in != a.first {
		a.in.Close()
	}
	a.prevPath, a.in, a.path, a.more = a.path, in, a.more[0], a.more[1:]
	a.begun = false
	return true, nil
}

// begin reads the first frame of a file, fr, for its place in the
// capture (capture.Begin), and reports whether it is that frame (no
// other). The first file's is reported (CaptureStart: a file after the
// capture's first, replayed without those before it, has books that lack
// them); a later file must be the next of the same capture as the one
// before: a file missing between them, another run's or out of order is
// an error, where the replay went on across the hole. Files of an older
// handler say nothing: none is checked (a file after the first that does
// not say its place, after one that does, is another run's).
func (a *arbitrated) begin(fr *pcap.Frame) (bool, error) {
	run, index, previous, ok := capture.Begin(fr.Payload)
	ok = ok && fr.Marker
	cur := a.start
	a.start = nil
	if ok {
		a.start = &fileStart{run: run, index: index}
	}
	if a.in == a.first {
		if ok {
			a.rep.CaptureStart, a.rep.FilesBefore, a.rep.PreviousFile = captureFirst, index, previous
			if index > 0 {
				a.rep.CaptureStart = captureContinued
			}
		}
		return ok, nil
	}
	const apart = "replay each run's files apart"
	switch {
	case cur == nil && !ok:
		return false, nil // an older handler's files: their places unknown
	case cur == nil:
		return false, fmt.Errorf("%s says its place in a capture (its file %d) and %s does not (an older handler's): not its continuation (%s)", a.path, index+1, a.prevPath, apart)
	case !ok:
		return false, fmt.Errorf("%s does not start with a capture file's begin frame, as %s does: not its continuation (%s)", a.path, a.prevPath, apart)
	case run != cur.run:
		return false, fmt.Errorf("%s is another capture's file (its file %d), not the continuation of %s (%s)", a.path, index+1, a.prevPath, apart)
	case index > cur.index+1:
		return false, fmt.Errorf("%d file(s) of the capture missing between %s (its file %d) and %s (its file %d, the file before it named %s): give every file of the capture, in the order written; or replay from %s on alone, whose books then lack what the files before it held",
			index-cur.index-1, a.prevPath, cur.index+1, a.path, index+1, previous, a.path)
	case index <= cur.index:
		return false, fmt.Errorf("%s is the capture's file %d and %s its file %d: out of order (give the files in the order written, their names' order)", a.path, index+1, a.prevPath, cur.index+1)
	}
	return true, nil
}

// answers are the ranges of sequence numbers a capture's re-request
// answers hold, by session, sorted and merged.
type answers map[moldudp64.Session][]moldudp64.Range

// readAnswers reads the re-request answers of the capture at path
// (capture.Answer), with the replay's options; requests reports that it
// records the ranges the handler re-requested (capture.Rerequest).
func readAnswers(path string, opt input.Options) (ans answers, requests bool, err error) {
	in, err := input.OpenOptions(path, opt)
	if err != nil {
		return nil, false, fmt.Errorf("replay: --feed: read the capture's re-request answers: %w", err)
	}
	defer in.Close()
	ans = answers{}
	for {
		fr, err := in.NextDatagram()
		if err != nil {
			break // the end, or where the replay stops with the error
		}
		if _, _, ok := capture.Rerequest(fr.Payload); ok && fr.Marker {
			requests = true
		}
		if fr.Marker || !capture.Answer(fr.SrcMAC) {
			continue
		}
		if p, err := moldudp64.Parse(fr.Payload); err == nil && p.Messages() > 0 {
			ans[p.Session] = append(ans[p.Session], moldudp64.Range{First: p.Seq, Count: uint64(p.Messages())})
		}
	}
	for s, rs := range ans {
		ans[s] = mergeRanges(rs)
	}
	return ans, requests, nil
}

// mergeRanges sorts rs and merges those that overlap or touch.
func mergeRanges(rs []moldudp64.Range) []moldudp64.Range {
	slices.SortFunc(rs, func(x, y moldudp64.Range) int { return cmp.Compare(x.First, y.First) })
	merged := rs[:0]
	for _, rg := range rs {
		if n := len(merged); n > 0 && rg.First <= merged[n-1].End() {
			merged[n-1].Count = max(merged[n-1].End(), rg.End()) - merged[n-1].First
			continue
		}
		merged = append(merged, rg)
	}
	return merged
}

// covers reports whether the answers of session s hold rg's first
// sequence number: the handler re-requested rg (a client passes on only
// the answers to its requests), and was answered, whole or in part (then
// the capture says where it gave up the rest: capture.GaveUp).
func (ans answers) covers(s moldudp64.Session, rg moldudp64.Range) bool {
	rs := ans[s]
	i, _ := slices.BinarySearchFunc(rs, rg.First, func(x moldudp64.Range, seq uint64) int { return cmp.Compare(x.End(), seq+1) })
	return i < len(rs) && rs[i].First <= rg.First
}

// line returns the feed's line a datagram was received on, as the receive
// backends tell them: by group and port, and the line's source when it
// names one.
func (a *arbitrated) line(fr *pcap.Frame) int {
	for i, l := range a.fc.Lines {
		if fr.Dst.Addr() == l.Group && fr.Dst.Port() == l.Port && (!l.Source.IsValid() || fr.Src.Addr() == l.Source) {
			return i
		}
	}
	return -1
}

// refused ends the replay at a file not taken as the next (next, begin):
// the capture ends where the file before it ended, err returned.
func (a *arbitrated) refused(err error) error {
	a.r.Finish()
	a.rep.CaptureEnd = cmp.Or(a.end, captureCut)
	return err
}

func (a *arbitrated) run() error {
	if a.rp.pub != nil {
		// Also when the capture stops early (cut mid-record): what was
		// applied until then is published, as without --feed.
		defer func() {
			a.rp.pub.Flush()
			a.rp.w.Heartbeat()
		}()
	}
	marked := a.in.CaptureSigfigs() == capture.FileMark
	a.first = a.in
	defer func() {
		if a.in != a.first {
			a.in.Close()
		}
	}()
	for {
		fr, err := a.in.NextDatagram()
		if errors.Is(err, io.EOF) {
			more, err := a.next()
			if err != nil {
				return a.refused(err)
			}
			if more {
				continue
			}
			break
		}
		if err != nil {
			if marked && errors.Is(err, io.ErrUnexpectedEOF) {
				// Cut inside a record (a handler killed during a
				// write): the capture is cut, replayed up to there as
				// one cut at a whole record; the error stops the replay.
				a.r.Finish()
				a.rep.CaptureEnd = captureCut
			}
			return err
		}
		if !a.begun {
			a.begun = true
			begin := false
			if marked {
				if begin, err = a.begin(&fr); err != nil {
					return a.refused(err)
				}
			}
			a.replayed++
			if begin {
				continue
			}
		}
		a.end = ""
		if fr.Marker {
			if reason, ok := capture.End(fr.Payload); ok && marked {
				a.end = captureStopped
				if reason == capture.EndNextFile {
					a.end = captureNextFile
				}
			} else if first, last, drained, ok := capture.Failed(fr.SrcMAC, fr.Payload, fr.Time); ok && marked {
				a.rep.Failed++
				a.r.Failed(first, last, drained)
			} else if first, count, ok := capture.Rerequest(fr.Payload); ok && marked {
				rg := moldudp64.Range{First: first, Count: count}
				_, session, again := capture.RerequestAgain(fr.Payload)
				switch {
				case a.in != a.first || a.rep.CaptureStart != captureContinued:
					if !again { // said again: the replay has it from the file before
						a.r.Rerequested(rg)
					}
				default:
					// A later file replayed without those before it,
					// inside a range re-requested in the file before
					// (said again), or re-requested here before anything
					// was delivered: held for as the handler held, its
					// answers here fill it.
					a.r.StartAt(session, rg, fr.Time)
				}
			} else if capture.GaveUp(fr.Payload) && marked {
				a.rep.LiveRecovery.GaveUp++
				a.r.GaveUp(fr.Time, capture.Drained(fr.SrcMAC, fr.Time))
			} else if before, ok := capture.FrozenAgain(fr.Payload); ok && marked && a.frozen {
				// The freeze the replay is in, said again at a file's
				// start: its messages go on from the files before's
				// (before of them), or start anew (0: written again
				// from the first); any other count, some are not here.
				if before != a.snapN {
					a.snapMsgs, a.snapN = a.snapMsgs[:0], 0
				}
			} else if from, atGap, ok := capture.Frozen(fr.Payload); ok && marked {
				a.frozen, a.snapMsgs, a.snapN = true, a.snapMsgs[:0], 0
				a.r.Freeze(fr.Time, from, atGap, capture.Drained(fr.SrcMAC, fr.Time))
			} else if capture.Resumed(fr.Payload) && marked {
				a.frozen = false
				a.r.Resume(fr.Time)
			} else if capture.Discarded(fr.Payload) && marked {
				// The session change before it unfroze the arbiter, the
				// replay's as the handler's: nothing to replay.
				a.frozen, a.snapMsgs, a.snapN = false, a.snapMsgs[:0], 0
			} else if msgs, ok := capture.SnapshotMessages(fr.Payload); ok && marked {
				a.snapMsgs = append(a.snapMsgs, msgs...)
				for len(msgs) >= 2 {
					msgs = msgs[min(len(msgs), 2+(int(msgs[0])<<8|int(msgs[1]))):]
					a.snapN++
				}
			} else if next, msgs, ok := capture.Snapshot(fr.Payload); ok && marked {
				a.rep.LiveRecovery.Snapshots++
				a.rep.LiveRecovery.SnapshotMessages += msgs
				if a.frozen && a.snapN == msgs {
					a.rep.LiveRecovery.SnapshotsReplayed++
					a.r.LoadSnapshot(fr.Time, a.snapMsgs, next)
					a.snapMsgs = nil // the replayer's until it is loaded
				} else if a.frozen {
					a.r.Resume(fr.Time) // its messages not all here: a gap, as before
				}
				a.frozen, a.snapMsgs, a.snapN = false, a.snapMsgs[:0], 0
			} else if next, session, ok := capture.HeldBehind(fr.Payload); ok && marked {
				if a.in == a.first && a.rep.CaptureStart == captureContinued {
					// A later file replayed without those before it,
					// where the handler held behind lines that went
					// back: held there too (the files in order hold
					// there themselves).
					a.r.StartBehind(session, next, fr.Time)
				}
			} else if ring, write, ok := capture.Lost(fr.Payload); ok && marked {
				a.rep.CaptureLost += ring + write
			} else {
				a.otherMarkers++ // of a later writer: skipped
			}
			continue
		}
		if marked && capture.Answer(fr.SrcMAC) {
			a.rep.LiveRecovery.Answers++
			if p, err := moldudp64.Parse(fr.Payload); err == nil {
				a.rep.LiveRecovery.AnswerMessages += uint64(p.Messages())
			}
			a.r.Recovered(fr.Payload, fr.Time, capture.Drained(fr.SrcMAC, fr.Time))
			continue
		}
		i := a.line(&fr)
		if i < 0 || i >= len(a.rep.Datagrams) {
			a.rep.Other++
			a.others.add(&fr)
			continue
		}
		a.rep.Datagrams[i]++
		if drained, ok := capture.Mark(fr.SrcMAC, fr.Time); ok && marked {
			a.rep.Marked++
			a.r.OfferMarked(i, fr.Payload, fr.Time, drained)
			continue
		}
		a.r.Offer(i, fr.Payload, fr.Time)
	}
	a.r.Finish()
	a.rep.CaptureEnd = a.end
	if marked && a.end == "" {
		a.rep.CaptureEnd = captureCut
	}
	return nil
}

// addStats adds to s what another file of the capture read, o.
func addStats(s *pcap.Stats, o pcap.Stats) {
	s.Frames += o.Frames
	s.Datagrams += o.Datagrams
	for i := range o.Skipped {
		s.Skipped[i] += o.Skipped[i]
	}
	s.Markers += o.Markers
	s.Reassembled += o.Reassembled
	s.Fragments += o.Fragments
}

func (a *arbitrated) report() *arbitratedReport {
	cs := a.in.CaptureStats()
	addStats(&cs, a.before)
	a.rep.Skipped = cs.Malformed() + a.otherMarkers
	a.rep.Reassembled, a.rep.Fragments = cs.Reassembled, cs.Fragments
	a.rep.SkippedBy, a.rep.skipped = skippedBy(cs), cs.SkippedSummary()
	if a.otherMarkers != 0 {
		if a.rep.SkippedBy == nil {
			a.rep.SkippedBy = make(map[string]uint64)
		}
		a.rep.SkippedBy[unknownMarker] = a.otherMarkers
		if a.rep.skipped != "" {
			a.rep.skipped += ", "
		}
		a.rep.skipped += fmt.Sprintf("%s %d", unknownMarker, a.otherMarkers)
	}
	a.rep.Resets = a.r.Resets
	a.rep.Filtered = a.r.Filtered()
	a.rep.Delivered = a.r.Delivered
	a.rep.Unmatched = a.unmatched()
	return &a.rep
}
