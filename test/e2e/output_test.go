package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestOutputStoredOnceAndAcknowledged: the coordinator acknowledges an
// agent's output once it is durable, stores a chunk sent again (after a
// reconnect, or after a coordinator restart) once, and the result's
// acknowledgement follows the output it came after.
func TestOutputStoredOnceAndAcknowledged(t *testing.T) {
	c := newCluster(t, "--node-lost-timeout", "60s")
	f := newScriptedAgent(t, c, "f")
	f.connect(api.Hello{})
	id := strings.TrimSpace(c.mustWard("submit", "--", "echo", "x"))
	var as api.Assign
	f.expect(api.FrameAssign, &as)
	ref := as.Tasks[0]
	chunk := func(n int, s string) api.OutputChunk {
		return api.OutputChunk{AttemptRef: ref, Stream: "stdout", Data: []byte(s), Seq: n}
	}
	var acks api.OutputAcks
	f.send(api.FrameOutput, api.Output{Chunks: []api.OutputChunk{chunk(1, "one\n"), chunk(2, "two\n")}})
	f.expect(api.FrameOutputAck, &acks)
	if len(acks.Acks) != 1 || acks.Acks[0].AttemptRef != ref || acks.Acks[0].Seq != 2 {
		t.Fatalf("output ack %+v, want %v up to 2", acks, ref)
	}
	// Sent again after a reconnect (the ack was lost), with one new chunk.
	f.close()
	f.connect(api.Hello{Running: []api.AttemptRef{ref}})
	f.send(api.FrameOutput, api.Output{Chunks: []api.OutputChunk{chunk(2, "two\n"), chunk(3, "three\n")}})
	f.expect(api.FrameOutputAck, &acks)
	if acks.Acks[0].Seq != 3 {
		t.Fatalf("output ack %+v, want up to 3", acks)
	}
	// And again after a coordinator restart, which must remember what it
	// stored.
	c.coord.kill9()
	c.restartCoordinator()
	f.close()
	f.connect(api.Hello{Running: []api.AttemptRef{ref}})
	f.send(api.FrameOutput, api.Output{Chunks: []api.OutputChunk{chunk(1, "one\n"), chunk(2, "two\n"), chunk(3, "three\n"), chunk(4, "four\n")}})
	f.expect(api.FrameOutputAck, &acks)
	f.send(api.FrameResults, api.Results{Results: []api.TaskResult{result(ref, 0)}})
	var ack api.Ack
	f.expect(api.FrameAck, &ack)
	c.waitJob(id, 10*time.Second)
	if got, want := c.mustWard("logs", id), "[0] one\n[0] two\n[0] three\n[0] four\n"; !strings.HasSuffix(got, want) || strings.Count(got, "two") != 1 {
		t.Fatalf("stored output %q, want each chunk once: %q", got, want)
	}
}
