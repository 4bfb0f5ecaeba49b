// Package cppbuild compiles the C++ shared-memory reader's programs
// (proto/cpp) for the Go tests and benchmarks that run them against the Go
// writer. It needs g++ (Debian package g++) and the flatbuffers 2.0.8
// headers (libflatbuffers-dev); a test without them is skipped, naming the
// package, and fails when they are present but the code does not compile.
//
// Binaries go to a content-addressed cache under the user's cache directory
// (like the Go build cache), keyed by the compiler version, the flags and
// every source and header, so the tests of one run compile each variant
// once and nothing is written into the repository.
package cppbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Root is the directory of the C++ reader: proto/cpp of this repository.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "proto", "cpp")
}

var (
	probeOnce sync.Once
	probeErr  string // reason to skip, empty when the toolchain is complete
	buildMu   sync.Mutex
)

// Require skips t unless g++ and the flatbuffers headers are installed.
func Require(t testing.TB) {
	t.Helper()
	probeOnce.Do(probe)
	if probeErr != "" {
		t.Skip(probeErr)
	}
}

func probe() {
	if _, err := exec.LookPath("g++"); err != nil {
		probeErr = "g++ is not installed (Debian package g++)"
		return
	}
	cmd := exec.Command("g++", "-std=c++17", "-fsyntax-only", "-x", "c++", "-")
	cmd.Stdin = strings.NewReader("#include <flatbuffers/flatbuffers.h>\nint main() {}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		probeErr = fmt.Sprintf("flatbuffers headers are missing (Debian package libflatbuffers-dev): %v\n%s", err, out)
	}
}

// Build compiles src (a path relative to Root, e.g. "tests/shm_driver.cpp")
// with the reader's include directory and the extra flags (default -O2)
// and returns the binary's path. It fails t when the compiler rejects the
// code.
func Build(t testing.TB, src string, flags ...string) string {
	t.Helper()
	Require(t)
	if len(flags) == 0 {
		flags = []string{"-O2"}
	}
	root := Root()
	args := append([]string{"-std=c++17", "-Wall", "-Wextra", "-Werror", "-I" + filepath.Join(root, "include")}, flags...)

	h := sha256.New()
	ver, err := exec.Command("g++", "--version").Output()
	if err != nil {
		t.Fatalf("g++ --version: %v", err)
	}
	h.Write(ver)
	fmt.Fprintf(h, "%q %q\n", args, src)
	if err := hashTree(h, filepath.Join(root, "include")); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join(root, src))
	if err != nil {
		t.Fatal(err)
	}
	h.Write(body)
	key := hex.EncodeToString(h.Sum(nil))[:24]

	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "feedhandler-cpp", key)
	bin := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".cpp"))
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp.%d", bin, os.Getpid())
	cmd := exec.Command("g++", append(args, "-o", tmp, filepath.Join(root, src))...)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("g++ %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func hashTree(h interface{ Write([]byte) (int, error) }, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hash %s: %w", dir, err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("hash %s: %w", f, err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return nil
}
