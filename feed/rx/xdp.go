package rx

import "fmt"

// openXDP opens the AF_XDP backend. Placeholder until the xsk adapter lands.
func openXDP(cfg Config) (Receiver, error) {
	return nil, fmt.Errorf("open xdp backend: %w", ErrNotSupported)
}
