package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/staging"
)

// runStaging sends one large file through file staging end to end, in
// this process: the client's upload to the coordinator, the agent's fetch
// into the task's working directory, the task (cp) writing it out, the
// agent sending the output back, and the client's fetch of that output;
// SHA-256 verified at every hop. Memory must stay flat: the process's
// peak RSS, sampled throughout, may grow by less than 64 MiB over its
// level before the transfer, whatever the file's size.
func runStaging(ctx context.Context, r *Result) error {
	size := opts.stagingBytes
	r.param("file_bytes", size)
	r.param("path", "client → coordinator → agent → task (cp) → agent → coordinator → client, one process")
	r.param("store", "bbolt, fsync on; blobs fsync'd before they are renamed into place")
	p, err := startCoordinatorFor(ctx, r, "staging", false)
	if err != nil {
		return err
	}
	defer p.stop()
	fleet, err := joinAgents(ctx, p, "s", 1, 1, 1, nil)
	if err != nil {
		return err
	}
	defer fleet.stop()
	fleet.run()
	if _, err := p.admin.waitConnected(ctx, 1, time.Minute); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(opts.agentDir, "ward-bench-staging-")
	if err != nil {
		return err
	}
	if !opts.keep {
		defer os.RemoveAll(dir)
	}
	in := filepath.Join(dir, "in.bin")
	sum, err := writePseudoRandom(in, size)
	if err != nil {
		return err
	}

	runtime.GC()
	base, err := readProcStatus(os.Getpid())
	if err != nil {
		return err
	}
	peak := startRSSSampler()
	t0 := time.Now()
	if err := uploadBlob(ctx, p.admin, in, sum, size); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	upload := time.Since(t0)
	t1 := time.Now()
	job, err := p.admin.submit(ctx, api.JobSpec{Argv: []string{"cp", "in.bin", "out.bin"}, Count: 1,
		Inputs: []api.StagedFile{{Path: "in.bin", SHA256: sum.String(), Size: size}}, Outputs: []string{"out.bin"}})
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	state, err := p.admin.waitJobEnd(ctx, job.ID)
	if err != nil {
		return err
	}
	if state != api.JobCompleted {
		d, _ := p.admin.jobDetail(ctx, job.ID)
		return fmt.Errorf("the staging job ended %s: %+v", state, d.Tasks)
	}
	run := time.Since(t1)
	t2 := time.Now()
	got, n, err := fetchOutputBlob(ctx, p.admin, job.ID, "out.bin")
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	fetch := time.Since(t2)
	maxKB := peak()
	if got != sum || n != size {
		return fmt.Errorf("the output came back as %s (%d bytes), want %s (%d bytes)", got, n, sum, size)
	}
	mb := float64(size) / (1 << 20)
	growth := float64(maxKB-base["VmRSS"]) / 1024
	r.fig("rss_growth_mb", round(growth, 1), "MB").atMost(64).
		withNote(fmt.Sprintf("peak VmRSS sampled every 20 ms (%d MB) minus VmRSS before the transfer (%d MB)", maxKB/1024, base["VmRSS"]/1024))
	r.fig("bytes_through", round(float64(size)/(1<<30), 2), "GiB").withNote("verified end to end: the client's fetch of the task's output has the input's SHA-256")
	r.fig("upload_mb_per_s", round(mb/upload.Seconds(), 0), "MB/s").withNote("client → coordinator, hashed on both sides, fsync'd")
	r.fig("job_s", round(run.Seconds(), 2), "s").withNote("submit → end: the agent fetches and verifies the input, cp, hashes and sends the output, the coordinator verifies and keeps it")
	r.fig("fetch_mb_per_s", round(mb/fetch.Seconds(), 0), "MB/s").withNote("coordinator → client, verified")
	return nil
}

// writePseudoRandom writes size bytes of a fast pseudo-random stream (not
// compressible, not all one page) and returns their SHA-256.
func writePseudoRandom(path string, size int64) (staging.Sum, error) {
	f, err := os.Create(path)
	if err != nil {
		return staging.Sum{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	go func() {
		rng := rand.NewChaCha8([32]byte{7})
		buf := make([]byte, 1<<20)
		for left := size; left > 0; {
			n := min(int64(len(buf)), left)
			rng.Read(buf[:n])
			if _, err := pw.Write(buf[:n]); err != nil {
				return
			}
			left -= n
		}
		pw.Close()
	}()
	_, sum, err := staging.Copy(f, pr, -1, nil)
	if err != nil {
		return sum, err
	}
	return sum, f.Sync()
}

// startRSSSampler samples this process's VmRSS every 20 ms until the
// returned function is called, which returns the highest value (kB).
func startRSSSampler() func() int64 {
	var maxKB atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if st, err := readProcStatus(os.Getpid()); err == nil && st["VmRSS"] > maxKB.Load() {
				maxKB.Store(st["VmRSS"])
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		wg.Wait()
		return maxKB.Load()
	}
}

// uploadBlob sends a file as `ward run --input` does.
func uploadBlob(ctx context.Context, a *adminAPI, path string, sum staging.Sum, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.base+"/v1/staging/files/"+sum.String()+"?name=in.bin", f)
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return nil
}

// fetchOutputBlob reads task 0's output file as `ward job output` does and
// returns its SHA-256 and size.
func fetchOutputBlob(ctx context.Context, a *adminAPI, job, path string) (staging.Sum, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/v1/jobs/"+job+"/outputs/0/file?path="+url.QueryEscape(path), nil)
	if err != nil {
		return staging.Sum{}, 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return staging.Sum{}, 0, err
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return staging.Sum{}, 0, fmt.Errorf("%s", resp.Status)
	}
	sum, n, err := staging.SumFile(resp.Body)
	return sum, n, err
}
