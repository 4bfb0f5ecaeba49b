// Package proto holds the FlatBuffers schema (book.fbs) of the normalized order
// book snapshot that feedhandler publishes, its generated Go code in
// package bookfb, and the generated Python code (proto/python/bookfb) that
// the pure-Python reader in proto/python ships with.
//
// The generated code is committed. Regenerate it with `make generate`, which
// runs flatc from Debian's flatbuffers-compiler 2.0.8; the Go runtime
// github.com/google/flatbuffers is pinned to the matching v2.0.8 in go.mod.
// The shared-memory layout that carries these snapshots lives in proto/shm and
// is documented in docs/SHM.md.
package proto

// SchemaVersion is the version of book.fbs. It only changes when the schema
// changes incompatibly, which also bumps shm.LayoutVersion.
const SchemaVersion = 1
