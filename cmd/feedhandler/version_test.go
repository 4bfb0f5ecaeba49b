package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: feedhandler --version (-version) and feedhandler version
// print the build's version and VCS revision on stdout, exit 0; before,
// --version was taken for run's flag ('flag provided but not defined:
// -version', exit 78) and there was no way to tell which build ran.
func TestVersion(t *testing.T) {
	for _, args := range append([][]string{{"version"}}, func() (a [][]string) {
		for _, f := range versionFlags {
			a = append(a, []string{f})
		}
		return a
	}()...) {
		out, errOut, err := runCommand(t, args...)
		if err != nil || errOut != "" || !strings.HasPrefix(out, "feedhandler ") || !strings.Contains(out, ", revision ") ||
			!strings.HasSuffix(out, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n") {
			t.Errorf("feedhandler %s: %v, stdout %q, stderr %q; want exit 0 and one line 'feedhandler VERSION, revision REV, GO OS/ARCH'", args[0], err, out, errOut)
		}
	}
	if _, _, err := runCommand(t, "version", "extra"); err == nil {
		t.Error("feedhandler version extra: exit 0, want a usage error")
	}
	goos := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"none", nil, false, "feedhandler (devel), revision (devel)," + goos},
		{"checkout, not stamped", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "feedhandler (devel), revision (devel)," + goos},
		{"stamped, modified", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "038363fc712f83743a4eca51c862f8921a69775d"},
			{Key: "vcs.time", Value: "2026-12-07T05:14:45Z"}, {Key: "vcs.modified", Value: "true"}}}, true,
			"feedhandler (devel), revision 038363fc712f83743a4eca51c862f8921a69775d (modified), 2026-12-07T05:14:45Z," + goos},
		{"go install module@version", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}}, true,
			"feedhandler v1.4.0, revision abc123," + goos},
	} {
		if got := versionLine(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
