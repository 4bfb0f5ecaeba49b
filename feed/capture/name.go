package capture

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// nameLayout is the time in a capture file's name (FileName).
const nameLayout = "20060102T150405.000000Z"

// now is the clock new files are named by (a test's steps back).
var now = time.Now

// FileName is the file a capture of base started at t goes to: base with
// the UTC time to the microsecond inserted before its extension,
// "/var/lib/feedhandler/nasdaq.pcap" ->
// ".../nasdaq-20261206T093000.250000Z.pcap", so that a restart never
// overwrites the capture of the run before, and the names of a base's
// files, all of one length, sort in time order (ls, a glob). The capture
// never names a file earlier than one of base's already made
// (createUnique): its names sort in the order it made them, whatever the
// clock did.
func FileName(base string, t time.Time) string {
	prefix, ext := nameParts(base)
	return prefix + t.UTC().Format(nameLayout) + ext
}

// nameParts returns what comes before and after the time in the names of
// base's files.
func nameParts(base string) (prefix, ext string) {
	ext = filepath.Ext(base)
	prefix = strings.TrimSuffix(base, ext) + "-"
	if ext == "" {
		ext = ".pcap"
	}
	return prefix, ext
}

// nameTime returns the time FileName put in name, a file of base's, or
// one made of it by a tool that adds an extension of its own (gzip's
// ".gz": replay reads it so); ok false when name is none.
func nameTime(base, name string) (t time.Time, ok bool) {
	prefix, ext := nameParts(base)
	end := len(prefix) + len(nameLayout)
	if len(name) < end+len(ext) || !strings.HasPrefix(name, prefix) || !strings.HasPrefix(name[end:], ext) ||
		len(name) > end+len(ext) && name[end+len(ext)] != '.' {
		return time.Time{}, false
	}
	t, err := time.Parse(nameLayout, name[len(prefix):end])
	return t, err == nil
}

// latestName returns the latest time in the names of base's files in its
// directory (zero: none, or the directory unreadable, which creating the
// file then says).
func latestName(base string) time.Time {
	var latest time.Time
	entries, _ := os.ReadDir(filepath.Dir(base))
	for _, e := range entries {
		if t, ok := nameTime(base, filepath.Join(filepath.Dir(base), e.Name())); ok && t.After(latest) {
			latest = t
		}
	}
	return latest
}

// createUnique creates FileName(base, t), t no earlier than the
// microsecond after after (the latest name of base's so far, latestName,
// compressed ones too: a clock stepped back, at a rotation or before a
// restart, still names the file after the ones before it), or when a file of that name exists
// (made in the same microsecond) that of the next microsecond that is
// free (of 100), so that the name still sorts after the taken one; the
// file is created, empty. It returns the name and its time.
func createUnique(base string, t, after time.Time) (*os.File, string, time.Time, error) {
	t = t.UTC().Truncate(time.Microsecond)
	if !t.After(after) {
		t = after.UTC().Truncate(time.Microsecond).Add(time.Microsecond)
	}
	for i := 0; ; i++ {
		at := t.Add(time.Duration(i) * time.Microsecond)
		name := FileName(base, at)
		f, err := createFile(name)
		if err == nil || !errors.Is(err, fs.ErrExist) || i == 99 {
			return f, name, at, err
		}
	}
}
