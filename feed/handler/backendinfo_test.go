package handler

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// namedRx is an idle receiver named as a real backend names itself.
type namedRx struct {
	countRx
	name string
}

func (r *namedRx) Backend() string { return r.name }

// TestReceiveBackendInfo: /metrics says which receive backend the handler
// runs on and how, the labels of receive_backend_info 1, in the
// allocation-free exposition and the Collector alike: a start that fell
// back from AF_XDP shows on a dashboard, not only in the log.
func TestReceiveBackendInfo(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"xdp (fh0 native, zero-copy; fh1 generic, copy, busy poll)", `backend="xdp",feed="F",mode="fh0 native, zero-copy; fh1 generic, copy, busy poll"`},
		{"uring (multishot recvmsg)", `backend="uring",feed="F",mode="multishot recvmsg"`},
		{rx.BackendSocket + " (recvmmsg)", `backend="socket",feed="F",mode="recvmmsg"`},
	} {
		r := &namedRx{name: c.name}
		h, err := Start(Config{
			Feed:        "F",
			Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
			Book:        book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
			Mode:        ModeRunToCompletion,
			ReceiveCore: -1,
			ShmName:     shmtest.Name(t, "fhbackend"),
			Open:        func(rx.Config) (rx.Receiver, error) { return r, nil },
			Log:         zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		want := "feedhandler_receive_backend_info{" + c.want + "} 1\n"
		if text := NewExposition(h).AppendText(nil); !bytes.Contains(text, []byte(want)) {
			t.Errorf("%s: the exposition has no %q:\n%s", c.name, want, backendLines(string(text)))
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewCollector(h))
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var ref bytes.Buffer
		for _, f := range fams {
			if _, err := expfmt.MetricFamilyToText(&ref, f); err != nil {
				t.Fatal(err)
			}
		}
		if !strings.Contains(ref.String(), want) {
			t.Errorf("%s: the Collector has no %q:\n%s", c.name, want, backendLines(ref.String()))
		}
		h.Stop()
	}
}

// backendLines are text's lines naming the receive backend.
func backendLines(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "backend") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
