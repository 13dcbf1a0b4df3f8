package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// mountSmallDisk mounts a tmpfs of size bytes at dir, unmounted when the
// test ends (after its processes, which are registered later, are gone).
// Mounting needs root, which CI has; elsewhere the test is skipped, saying
// so.
func mountSmallDisk(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("mounting a small tmpfs for the data directory needs root (CI runs as root): %v: %s", err, out)
		}
		t.Fatalf("mount a %d-byte tmpfs at %s: %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; unmounting lazily", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fillDisk writes path until the filesystem holding it is full and
// returns how many bytes it wrote.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("fill %s: %v", path, err)
			}
		}
	}
	return n
}

// newClusterOn starts a coordinator whose data directory is data.
func newClusterOn(t *testing.T, data string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), data: data, agents: map[string]*proc{}}
	c.args = append([]string{"coordinator", "--data", data, "--advertise", "127.0.0.1"}, extra...)
	c.startCoordinator("127.0.0.1:0", "127.0.0.1:0")
	return c
}

// submitUntilRefused submits jobs (args after "submit") until one is
// refused with STORE_UNAVAILABLE, at most tries times. It returns the jobs
// accepted on the way (stored, or kept for later: "job N was accepted
// before the store stopped writing"), how many of them were kept, and the
// refusal ("" if none came). Any other answer fails the test.
func submitUntilRefused(t *testing.T, c *cluster, tries int, args ...string) (accepted []string, kept int, refusal string) {
	t.Helper()
	for i := 0; i < tries && refusal == ""; i++ {
		out, errOut, code := c.ward(append([]string{"submit"}, args...)...)
		switch {
		case code == 0:
			accepted = append(accepted, strings.TrimSpace(out))
		case strings.Contains(errOut, "was accepted before the store stopped writing"):
			m := regexp.MustCompile(`job (\d+) was accepted`).FindStringSubmatch(errOut)
			if m == nil {
				t.Fatalf("a kept submission does not name its job: %s", errOut)
			}
			accepted = append(accepted, m[1])
			kept++
		case strings.Contains(errOut, string(api.CodeStoreUnavailable)):
			refusal = errOut
		default:
			t.Fatalf("submit while the store cannot write: exit %d: %s%s", code, out, errOut)
		}
	}
	return accepted, kept, refusal
}

// waitStoreWritable waits until status says the store writes again.
func waitStoreWritable(t *testing.T, c *cluster, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "the store to write again", func() bool {
		var st api.Status
		out, _, code := c.ward("status", "-o", "json")
		return code == 0 && jsonUnmarshal(out, &st) == nil && st.StoreHealth.Writable
	})
}

// stillServing checks that the coordinator keeps running until the time
// given, then that agent a's session is still there.
func stillServing(t *testing.T, c *cluster, until time.Time) {
	t.Helper()
	for time.Now().Before(until) {
		if !c.coord.running() {
			t.Fatalf("the coordinator stopped during the outage: %s", c.coord.stderrText())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, ok := c.node("a"); !ok || n.State != "ready" {
		t.Errorf("agent a during the outage: %+v", n)
	}
}

// nothingLost waits for jobs to end, restarts the coordinator from its
// store, and checks that each job completed every task once, with its
// output.
func nothingLost(t *testing.T, c *cluster, jobs []string) {
	t.Helper()
	for _, id := range jobs {
		c.waitJob(id, 60*time.Second)
	}
	c.coord.interrupt()
	c.coord.wait(20 * time.Second)
	c.restartCoordinator()
	for _, id := range jobs {
		d := c.waitJob(id, 60*time.Second)
		completedOnce(t, d)
		if n := logsAtMostOnce(t, c, id); n != len(d.Tasks) {
			t.Errorf("job %s: %d of %d task outputs kept across the outage", id, n, len(d.Tasks))
		}
	}
}

// TestStoreFullRefusesAndResumes: the coordinator's data directory is a
// small tmpfs. Filled to the last byte, the store cannot write: new work is
// refused with STORE_UNAVAILABLE naming the store and the fix, status,
// doctor and /metrics say so, the agent's session stays and its running
// tasks finish (their results wait in memory, unacknowledged). Freed, the
// coordinator resumes on its own: everything accepted is stored, and a
// restart from disk finds every job complete with all its output.
func TestStoreFullRefusesAndResumes(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "coord")
	mountSmallDisk(t, data, 24<<20)
	c := newClusterOn(t, data, "--node-lost-timeout", "60s")
	c.startAgent("a", 4)
	cert, key := certAndKey(t, c)
	hc := c.httpClient(cert, key)
	metric := func(name string) string {
		resp, err := hc.Get("https://" + c.cluster + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(string(b))
		if m == nil {
			return ""
		}
		return m[1]
	}
	if v := metric("ward_store_writable"); v != "1" {
		t.Fatalf("ward_store_writable = %q before the disk fills, want 1", v)
	}

	// Tasks that run across the outage: they finish while the store cannot
	// write, so their results and output wait in memory.
	running := strings.TrimSpace(c.mustWard("submit", "--count", "8", "--", "sh", "-c", "sleep 2; echo across-{index}"))
	waitFor(t, 20*time.Second, "4 running tasks", func() bool { return c.job(running).Counts[api.TaskRunning] == 4 })

	filler := filepath.Join(data, "filler")
	filled := fillDisk(t, filler)
	t.Logf("filled the data directory's tmpfs with %d bytes", filled)

	// bbolt reuses pages it freed earlier, so a small write may still fit;
	// submissions with a large environment need new pages. Each answer is
	// either accepted (it fit), kept for later (accepted as the store
	// stopped writing), or refused.
	bigEnv := "BIG=" + strings.Repeat("x", 120<<10) // under the 128 KiB a single exec argument may have
	kept, pending, refusal := submitUntilRefused(t, c, 40, "--count", "50", "--env", bigEnv, "--", "sh", "-c", "echo big-{index}")
	if refusal == "" {
		t.Fatal("40 large submissions on a full disk and none was refused with STORE_UNAVAILABLE")
	}
	for _, want := range []string{"bolt store " + filepath.Join(data, "ward.db"), "no space left on device", "df -h " + data, "resumes"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, refusal)
		}
	}
	outageStart := time.Now()

	// Other new work is refused the same way; reads go on.
	if _, errOut, code := c.ward("token", "create"); code == 0 || !strings.Contains(errOut, string(api.CodeStoreUnavailable)) {
		t.Errorf("token create on a full disk: exit %d: %s", code, errOut)
	}
	status := c.mustWard("status")
	if !strings.Contains(status, "store writes") || !strings.Contains(status, "FAILING") {
		t.Errorf("ward status does not show the failing store:\n%s", status)
	}
	var st api.Status
	c.wardJSON(&st, "status")
	if st.StoreHealth.Writable || st.StoreHealth.UnwritableSince == nil || !strings.Contains(st.StoreHealth.Fix, "df -h") {
		t.Errorf("status store_health during the outage: %+v", st.StoreHealth)
	}
	if out, _, _ := c.ward("doctor"); !strings.Contains(out, string(api.CodeStoreUnavailable)) {
		t.Errorf("ward doctor does not report the store:\n%s", out)
	}
	if v := metric("ward_store_writable"); v != "0" {
		t.Errorf("ward_store_writable = %q during the outage, want 0", v)
	}

	// The running tasks finish during the outage; the agent stays
	// connected and the coordinator keeps running well past the old
	// 10-second stop.
	// (The next four are placed, but their assignments wait for the store.)
	waitFor(t, 30*time.Second, "the first four tasks to end during the outage", func() bool {
		return c.job(running).Counts[api.TaskCompleted] >= 4
	})
	stillServing(t, c, outageStart.Add(12*time.Second))
	if !strings.Contains(c.coord.stderrText(), "store cannot write") {
		t.Error("the coordinator log does not say the store cannot write")
	}

	// Free the disk: the coordinator resumes on its own.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitStoreWritable(t, c, 30*time.Second)
	if !strings.Contains(c.coord.stderrText(), "store writes again") {
		t.Error("the coordinator log does not say the store writes again")
	}
	after := strings.TrimSpace(c.mustWard("submit", "--count", "5", "--", "sh", "-c", "echo after-{index}"))
	if v := metric("ward_store_writable"); v != "1" {
		t.Errorf("ward_store_writable = %q after the outage, want 1", v)
	}
	if v := metric("ward_store_outages_total"); v != "1" {
		t.Errorf("ward_store_outages_total = %q, want 1", v)
	}

	// Nothing was lost: after a restart from disk, every job accepted is
	// complete, each task once, with its output.
	nothingLost(t, c, append([]string{running, after}, kept...))
	t.Logf("%d submissions accepted before the refusal (%d of them kept while the store could not write); the refusal:\n%s", len(kept), pending, refusal)
}

// TestEtcdOutageRefusesAndResumes: the coordinator's etcd stops for about
// 20 seconds. Once a commit has timed out, new work is refused with
// STORE_UNAVAILABLE naming etcd and the fix; the agent's session and its
// running tasks go on; when etcd is back the coordinator resumes on its
// own and, after a restart, every job accepted is complete with its
// output.
func TestEtcdOutageRefusesAndResumes(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	c := newCluster(t, append(etcdArgs(srv), "--node-lost-timeout", "120s")...)
	c.startAgent("a", 4)
	running := strings.TrimSpace(c.mustWard("submit", "--count", "8", "--", "sh", "-c", "sleep 3; echo across-{index}"))
	waitFor(t, 20*time.Second, "4 running tasks", func() bool { return c.job(running).Counts[api.TaskRunning] == 4 })

	srv.Stop()
	stopped := time.Now()
	// The first write after the stop waits for etcd's request timeout
	// (10 s); its caller is told the job is kept. Later ones are refused
	// at once.
	start := time.Now()
	kept, _, refusal := submitUntilRefused(t, c, 5, "--count", "3", "--", "sh", "-c", "echo outage-{index}")
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the submissions until the refusal took %s", took)
	}
	if refusal == "" {
		t.Fatal("no submission was refused with STORE_UNAVAILABLE while etcd was down")
	}
	for _, want := range []string{"etcd store etcd://" + srv.Endpoint, "etcdctl endpoint health", "resumes"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, refusal)
		}
	}
	// Once the store is known down, a refusal comes at once, not after a
	// timeout.
	tokStart := time.Now()
	if _, errOut, code := c.ward("token", "create"); code == 0 || !strings.Contains(errOut, string(api.CodeStoreUnavailable)) {
		t.Errorf("token create while etcd is down: exit %d: %s", code, errOut)
	}
	if took := time.Since(tokStart); took > 5*time.Second {
		t.Errorf("the refusal of token create took %s", took)
	}
	if out := c.mustWard("status"); !strings.Contains(out, "FAILING") {
		t.Errorf("ward status does not show the failing store:\n%s", out)
	}
	stillServing(t, c, stopped.Add(20*time.Second))

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitStoreWritable(t, c, 60*time.Second)
	after := strings.TrimSpace(c.mustWard("submit", "--count", "3", "--", "sh", "-c", "echo after-{index}"))
	nothingLost(t, c, append([]string{running, after}, kept...))
}
