package agent

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

func newTestAgent() *Agent {
	return &Agent{
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		running: map[api.AttemptRef]*attempt{}, unacked: map[api.AttemptRef]api.TaskResult{},
		pending: map[api.AttemptRef][]api.OutputChunk{},
		notify:  make(chan struct{}, 1), hbChanged: make(chan struct{}, 1),
	}
}

func frame(t *testing.T, ft api.FrameType, msg any) []byte {
	t.Helper()
	b, err := api.AppendFrame(nil, ft, msg)
	if err != nil {
		t.Fatal(err)
	}
	return b[5:]
}

// TestOutputKeptUntilStored: output is kept until the coordinator says it
// is stored, and a new session sends it again before the attempt's result,
// which the hello holds back (reporting the attempt as running) while any
// of the attempt's output is unacknowledged.
func TestOutputKeptUntilStored(t *testing.T) {
	a := newTestAgent()
	ref := api.AttemptRef{Job: "1", Task: 0, Attempt: 1}
	r := &reporter{a: a, ref: ref}
	r.Output("stdout", []byte("one\n"))
	r.Output("stderr", []byte("two\n"))
	res := api.TaskResult{AttemptRef: ref, Reason: api.EndExited}
	r.Exited(res)

	hello := func() api.Hello {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.helloLocked("h")
	}
	seqs := func() []int {
		a.mu.Lock()
		defer a.mu.Unlock()
		var out []int
		for _, ch := range a.out.output {
			out = append(out, ch.Seq)
		}
		return out
	}

	h := hello()
	if len(h.Finished) != 0 || len(h.Running) != 1 || h.Running[0] != ref {
		t.Fatalf("hello with unacknowledged output: running %v, finished %v; want the attempt as running", h.Running, h.Finished)
	}
	if got := seqs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("output to send again: seqs %v, want [1 2]", got)
	}
	if len(a.out.results) != 1 || a.out.results[0] != res {
		t.Fatalf("the held result is not queued after the output: %v", a.out.results)
	}

	// The first chunk is stored: only the second goes again.
	if err := a.handle(api.FrameOutputAck, frame(t, api.FrameOutputAck, api.OutputAcks{Acks: []api.OutputAck{{AttemptRef: ref, Seq: 1}}})); err != nil {
		t.Fatal(err)
	}
	hello()
	if got := seqs(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("after the ack of chunk 1: seqs %v, want [2]", got)
	}

	// The result's ack covers the rest of the output.
	if err := a.handle(api.FrameAck, frame(t, api.FrameAck, api.Ack{Refs: []api.AttemptRef{ref}})); err != nil {
		t.Fatal(err)
	}
	h = hello()
	if len(h.Running)+len(h.Finished) != 0 || len(seqs()) != 0 || a.pendingBytes != 0 {
		t.Fatalf("after the result's ack: hello %+v, output %v, %d bytes pending", h, seqs(), a.pendingBytes)
	}

	// Without pending output a result rides in the hello, as before.
	ref2 := api.AttemptRef{Job: "1", Task: 1, Attempt: 1}
	(&reporter{a: a, ref: ref2}).Exited(api.TaskResult{AttemptRef: ref2, Reason: api.EndExited})
	if h := hello(); len(h.Finished) != 1 || len(h.Running) != 0 {
		t.Fatalf("a result without output: running %v, finished %v", h.Running, h.Finished)
	}
}

// TestOutputOverTheBufferIsMarked: output past maxBufferedOutput is
// dropped, and the attempt's own output says how much, before its result.
func TestOutputOverTheBufferIsMarked(t *testing.T) {
	a := newTestAgent()
	ref := api.AttemptRef{Job: "1", Task: 0, Attempt: 1}
	r := &reporter{a: a, ref: ref}
	big := bytes.Repeat([]byte("x"), maxBufferedOutput-10)
	r.Output("stdout", big)
	r.Output("stdout", []byte("this does not fit"))
	r.Exited(api.TaskResult{AttemptRef: ref, Reason: api.EndExited})
	chunks := a.pending[ref]
	if len(chunks) != 2 || !bytes.Contains(chunks[1].Data, []byte("17 bytes of this task's output were dropped")) || chunks[1].Seq != 2 {
		t.Fatalf("pending after the overflow: %d chunks, last %q", len(chunks), chunks[len(chunks)-1].Data)
	}
}

// TestWriterSplitsOutputFrames: a large backlog of output goes out in
// frames of bounded size, each within the coordinator's frame limit.
func TestWriterSplitsOutputFrames(t *testing.T) {
	a := newTestAgent()
	ref := api.AttemptRef{Job: "1", Task: 0, Attempt: 1}
	r := &reporter{a: a, ref: ref}
	chunk := bytes.Repeat([]byte("y"), 256<<10)
	for range 12 { // 3 MiB
		r.Output("stdout", chunk)
	}
	local, remote := net.Pipe()
	defer local.Close()
	done := make(chan struct{})
	go a.writer(local, time.Hour, done)
	defer close(done)
	hdr := make([]byte, 5)
	remote.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard only: -race on a loaded machine took over 10 s
	got, frames := 0, 0
	for got < 12 {
		ft, body, err := api.ReadFrameLimit(remote, hdr, 2<<20)
		if err != nil {
			t.Fatalf("after %d chunks in %d frames: %v", got, frames, err)
		}
		if ft != api.FrameOutput {
			continue
		}
		var m api.Output
		if err := api.DecodeFrame(ft, body, &m); err != nil {
			t.Fatal(err)
		}
		frames++
		got += len(m.Chunks)
	}
	if frames < 3 {
		t.Fatalf("3 MiB of output went out in %d frames; want frames of at most %d bytes", frames, maxOutputFrame)
	}
	remote.Close()
}
