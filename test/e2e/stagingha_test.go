package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// TestStagedFilesSurviveTheLeader: three coordinators on one etcd; the
// leader B receives a job's input and another job's output, then dies.
// The next leader serves the input to the agent that runs the waiting job,
// and the output to `ward job output`: B copied both to the other
// coordinators when it received them.
func TestStagedFilesSurviveTheLeader(t *testing.T) {
	a, b, _ := threeCoordinators(t)
	// B copies files to the coordinators it knows live: wait until it
	// knows both (its join strings name them).
	waitFor(t, 20*time.Second, "B to know the other two coordinators", func() bool {
		js, err := enroll.ParseJoinString(b.token())
		return err == nil && len(js.Addrs()) == 3
	})
	a.startAgent("n1", 1)
	in := filepath.Join(a.dir, "in.bin")
	sum := writeRandom(t, in, 3<<20+7)
	ran := strings.TrimSpace(a.mustWard("submit", "--input", in, "--output-file", "out.bin", "--", "cp", "in.bin", "out.bin"))
	if d := a.waitJob(ran, 60*time.Second); d.State != api.JobCompleted {
		t.Fatalf("job with files before the failover: %s", d.State)
	}
	// This one waits for an agent that comes only after B is gone.
	in2 := filepath.Join(a.dir, "in2.bin")
	sum2 := writeRandom(t, in2, 1<<20+3)
	waiting := strings.TrimSpace(a.mustWard("submit", "--label", "late=yes", "--wait-for-nodes", "--input", in2, "--output-file", "sum.txt", "--",
		"sh", "-c", "sha256sum in2.bin | cut -d' ' -f1 > sum.txt"))

	b.coord.kill9()
	awaitNewLeader(t, a, b)
	a.startAgent("n2", 1, "--label", "late=yes")
	if d := a.waitJob(waiting, 60*time.Second); d.State != api.JobCompleted {
		t.Fatalf("the job that waited for the new leader: %s %v", d.State, d.Counts)
	}
	got := filepath.Join(t.TempDir(), "waiting")
	a.mustWard("job", "output", waiting, "--task", "0", "--to", got)
	if b, _ := os.ReadFile(filepath.Join(got, "sum.txt")); "sha256:"+strings.TrimSpace(string(b)) != sum2 {
		t.Fatalf("the task saw its input as %q, want %s", b, sum2)
	}
	out := filepath.Join(t.TempDir(), "ran")
	a.mustWard("job", "output", ran, "--task", "0", "--to", out)
	if got := fileSum(t, filepath.Join(out, "out.bin")); got != sum {
		t.Fatalf("the output B received came back from the new leader as %s, want %s", got, sum)
	}
}

// TestStagingRetentionAcrossCoordinators: the copies follow the
// original. With staging_retention, once the leader purged a finished
// job's staged files, the other coordinators' copies are gone too.
func TestStagingRetentionAcrossCoordinators(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	keep := []string{"--staging-retention", "3s"}
	a, b, c := peerCluster(t, srv, "coord-a", keep...), peerCluster(t, srv, "coord-b", keep...), peerCluster(t, srv, "coord-c", keep...)
	startPeers(b) // B leads
	startPeers(a, c)
	waitFor(t, 20*time.Second, "B to know the other two coordinators", func() bool {
		js, err := enroll.ParseJoinString(b.token())
		return err == nil && len(js.Addrs()) == 3
	})
	a.startAgent("n1", 1)
	in := filepath.Join(a.dir, "in.bin")
	inSum := strings.TrimPrefix(writeRandom(t, in, 1<<20+11), "sha256:")
	outSum := sha256.Sum256([]byte("done\n"))
	id := strings.TrimSpace(a.mustWard("submit", "--input", in, "--output-file", "out.txt", "--", "sh", "-c", "echo done > out.txt"))
	if d := a.waitJob(id, 60*time.Second); d.State != api.JobCompleted {
		t.Fatalf("job: %s", d.State)
	}
	held := func(co *cluster, hexSum string) bool {
		_, err := os.Stat(filepath.Join(co.data, "staging", "sha256", hexSum))
		return err == nil
	}
	for _, co := range []*cluster{a, b, c} {
		for _, s := range []string{inSum, hex.EncodeToString(outSum[:])} {
			if !held(co, s) {
				t.Fatalf("%s holds no copy of %s after the job", co.cluster, s)
			}
		}
	}
	waitFor(t, 60*time.Second, "the leader to purge the job's staged files", func() bool {
		for _, e := range b.auditEvents() {
			if e.Type == "staging.purge" && e.Target == id {
				return true
			}
		}
		return false
	})
	for _, co := range []*cluster{a, b, c} {
		waitFor(t, 10*time.Second, co.cluster+"'s copies to be removed", func() bool {
			return !held(co, inSum) && !held(co, hex.EncodeToString(outSum[:]))
		})
	}
}
