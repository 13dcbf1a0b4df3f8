package coordinator

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/telemetry"
)

func limitedCoordinator(queue int) *Coordinator {
	cfg := config.CoordinatorDefaults()
	cfg.SessionQueueBytes = queue
	return &Coordinator{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: telemetry.New(func() []telemetry.Expiry { return nil }, func() (time.Duration, bool) { return 0, false }, func() (int, int) { return 0, 0 })}
}

// TestSessionQueueCap: an agent that does not read loses its session once
// what is queued for it passes session_queue_bytes; the coordinator does
// not buffer on.
func TestSessionQueueCap(t *testing.T) {
	c := limitedCoordinator(64 << 10)
	local, remote := net.Pipe() // remote never reads
	defer remote.Close()
	s := &session{c: c, conn: local, node: "n", done: make(chan struct{}), outDrained: make(chan struct{}, 1)}
	frame := make([]byte, 4<<10)
	for range 64 {
		s.sendRaw(frame)
	}
	s.wmu.Lock()
	closed, queued := s.closed, len(s.wbuf)
	s.wmu.Unlock()
	if !closed || queued != 0 {
		t.Fatalf("after 256 KiB to an agent that does not read: closed %v, %d bytes still queued", closed, queued)
	}
	if _, err := local.Write([]byte{0}); err == nil {
		t.Fatal("the connection is still open")
	}
}

// TestSessionOutputBackpressure: while an agent's output waiting for the
// store is over session_queue_bytes, its reader waits, and goes on once
// enough is stored.
func TestSessionOutputBackpressure(t *testing.T) {
	c := limitedCoordinator(4 << 20)
	s := &session{c: c, node: "n", outDrained: make(chan struct{}, 1)}
	s.outputQueued(3 << 20)
	s.waitOutputStored() // under the cap: no wait
	s.outputQueued(2 << 20)
	resumed := make(chan struct{})
	go func() { s.waitOutputStored(); close(resumed) }()
	select {
	case <-resumed:
		t.Fatal("the reader went on with 5 MiB of output waiting, over a 4 MiB cap")
	case <-time.After(50 * time.Millisecond):
	}
	s.outputStored(2 << 20)
	select {
	case <-resumed:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not go on once the output was stored")
	}
}
