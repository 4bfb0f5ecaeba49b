package handler

import "time"

// receiveErrorEvery is how often the receive thread logs a receive error
// at most.
const receiveErrorEvery = time.Second

// logReceiveError logs an error the receiver returned, at most one line a
// receiveErrorEvery: the receive loop retries a millisecond later, so a
// receiver failing on every call would write a thousand lines a second.
// Every error is counted (ReceiveErrors); a line says how many were not
// logged since the one before. Receive thread only.
func (h *Handler) logReceiveError(err error) {
	now := time.Now()
	if !h.rxErrLogged.IsZero() && now.Sub(h.rxErrLogged) < receiveErrorEvery {
		h.rxErrQuiet++
		return
	}
	ev := h.log.Error().Err(err)
	if h.rxErrQuiet > 0 {
		ev = ev.Uint64("not_logged", h.rxErrQuiet)
	}
	ev.Msg("receive")
	h.rxErrLogged, h.rxErrQuiet = now, 0
}
