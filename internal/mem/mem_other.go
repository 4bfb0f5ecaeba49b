//go:build !linux

package mem

import "errors"

func populate(b []byte) {}

// Resident is not implemented here.
func Resident(b []byte) (in, pages int, err error) { return 0, 0, errors.ErrUnsupported }
