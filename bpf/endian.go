package bpf

import "encoding/binary"

var nativeEndian = binary.NativeEndian
