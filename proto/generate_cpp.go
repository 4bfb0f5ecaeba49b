package proto

// The C++ reader (cpp/include/feedhandler/shm_reader.hpp) decodes snapshots
// with the code flatc 2.0.8 generates; it must compile against the headers
// of Debian's libflatbuffers-dev of the same version.
//go:generate flatc --cpp -o cpp/include/feedhandler book.fbs
