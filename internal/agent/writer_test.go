package agent

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestWriterSendsEveryResultOnce feeds results from several goroutines
// while the writer batches them onto a connection, and checks that each
// arrives exactly once: the writer reuses its lists between writes, and a
// list still in the outbox must never be handed out twice.
func TestWriterSendsEveryResultOnce(t *testing.T) {
	const producers, each = 4, 5000
	a := &Agent{
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		running: map[api.AttemptRef]*attempt{}, unacked: map[api.AttemptRef]api.TaskResult{},
		notify: make(chan struct{}, 1), hbChanged: make(chan struct{}, 1),
	}
	local, remote := net.Pipe()
	defer local.Close()
	done := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() { writerErr <- a.writer(local, time.Hour, done) }()

	for p := range producers {
		go func() {
			for i := range each {
				ref := api.AttemptRef{Job: strconv.Itoa(p), Task: i, Attempt: 1}
				r := &reporter{a: a, ref: ref}
				r.Started(time.Now())
				r.Exited(api.TaskResult{AttemptRef: ref, Reason: api.EndExited})
				if i%20 == 0 {
					// Pauses let the writer drain the outbox, so some of
					// its wake-ups find nothing to send.
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
	}

	seen := map[api.AttemptRef]int{}
	hdr := make([]byte, 5)
	remote.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(seen) < producers*each {
		ft, body, err := api.ReadFrame(remote, hdr)
		if err != nil {
			t.Fatalf("after %d distinct results: %v", len(seen), err)
		}
		if ft != api.FrameResults {
			continue
		}
		var m api.Results
		if err := api.DecodeFrame(ft, body, &m); err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Results {
			seen[r.AttemptRef]++
			if seen[r.AttemptRef] > 1 {
				t.Fatalf("result %+v arrived twice", r.AttemptRef)
			}
		}
	}
	close(done)
	a.wake()
	remote.Close()
	<-writerErr
}
