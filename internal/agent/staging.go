package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/runas"
	"github.com/wardcluster/ward/internal/staging"
	"github.com/wardcluster/ward/internal/transport"
)

// stagingTries is how often a file transfer that failed on the network is
// tried before the attempt fails (and the coordinator retries it).
const stagingTries = 3

// runStaged runs an attempt of a job with files: it fetches the inputs
// into the working directory (the job's --dir, or a scratch directory of
// its own under the agent's data directory), verifying each one's SHA-256,
// runs the task there, and sends back the files the output patterns match
// before it reports the end. A failed or corrupted transfer ends the
// attempt as staging_failed, which the coordinator retries.
func (a *Agent) runStaged(as api.Assignment, rep Reporter) Handle {
	h := &stagedHandle{}
	go a.stage(as, rep, h)
	return h
}

// stagedHandle is the handle of a staged attempt: a kill before the
// process starts stops the transfers, after that it goes to the process.
type stagedHandle struct {
	mu     sync.Mutex
	inner  Handle
	why    string
	cancel context.CancelFunc
}

func (h *stagedHandle) Kill(reason string) {
	h.mu.Lock()
	if h.why == "" {
		h.why = reason
	}
	inner, cancel := h.inner, h.cancel
	h.mu.Unlock()
	if inner != nil {
		inner.Kill(reason)
	} else if cancel != nil {
		cancel()
	}
}

func (h *stagedHandle) killed() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why
}

func (a *Agent) stage(as api.Assignment, rep Reporter, h *stagedHandle) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.mu.Lock()
	h.cancel = cancel
	h.mu.Unlock()
	name := fmt.Sprintf("%s.%d.%d", as.Job, as.Task, as.Attempt)
	// With --run-as-user, the files are the task account's (stageas.go):
	// the agent keeps the bytes in a private directory on their way.
	var acct *runas.Account
	private := filepath.Join(a.cfg.DataDir, "staging", name)
	dir, scratch := as.Dir, false
	if dir == "" {
		dir, scratch = filepath.Join(a.cfg.DataDir, "work", name), true
	}
	cleanup := func() {
		switch {
		case scratch && acct != nil:
			if err := stageAs(*acct, nil, io.Discard, stageRemove, dir); err != nil {
				a.log.Warn("could not remove a task's scratch directory", "dir", dir, "err", err)
			}
		case scratch:
			os.RemoveAll(dir)
		}
		if acct != nil {
			os.RemoveAll(private)
		}
	}
	fail := func(reason, msg string) {
		cleanup()
		now := api.NanosOf(time.Now())
		rep.Exited(api.TaskResult{AttemptRef: as.AttemptRef, ExitCode: -1, Reason: reason, Error: msg, Ended: now})
	}
	if a.runAs != nil {
		ac, err := a.runAs.Resolve(as.User)
		if err != nil {
			scratch = false // nothing made yet
			fail(api.EndStartErr, err.Error())
			return
		}
		acct = &ac
	}
	var err error
	switch {
	case acct == nil:
		if scratch {
			os.RemoveAll(dir)
		}
		err = os.MkdirAll(dir, 0o700)
	case scratch:
		// A directory of the account's own, with a name no one can
		// take first, in the system's temporary directory: the data
		// directory holds the agent's key.
		var out bytes.Buffer
		if err = stageAs(*acct, nil, &out, stageScratch, os.TempDir()); err == nil {
			dir = out.String()
		} else {
			scratch = false // nothing to remove
		}
	default:
		err = stageAs(*acct, nil, io.Discard, stageMkdir, dir)
	}
	if err == nil && acct != nil {
		err = os.MkdirAll(private, 0o700)
	}
	if err != nil {
		fail(api.EndStagingFailed, fmt.Sprintf("working directory for the job's files on %s: %v", a.state.Node, err))
		return
	}
	fc, err := a.stagingClient()
	if err != nil {
		fail(api.EndStagingFailed, err.Error())
		return
	}
	defer fc.close()
	for i, in := range as.Staging.Inputs {
		if acct != nil {
			err = fc.fetchAs(ctx, as.AttemptRef, i, in, private, dir, *acct)
		} else {
			err = fc.fetch(ctx, as.AttemptRef, i, in, dir)
		}
		if err != nil {
			if why := h.killed(); why != "" {
				fail(why, "ended while its input files were fetched")
			} else {
				fail(api.EndStagingFailed, err.Error())
			}
			return
		}
	}
	as.Dir = dir
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.why != "" {
		fail(h.why, "ended before it started, once its input files were fetched")
		return
	}
	h.inner = a.exec.Run(as, &outputSender{Reporter: rep, fc: fc, as: as, dir: dir, acct: acct, private: private, cleanup: cleanup})
}

// outputSender passes an attempt's events on, and before its end sends the
// files its output patterns match.
type outputSender struct {
	Reporter
	fc      *stagingClient
	as      api.Assignment
	dir     string
	acct    *runas.Account // with --run-as-user: whose rights read the files
	private string         // the agent's own directory for them then
	cleanup func()
}

func (o *outputSender) Exited(res api.TaskResult) {
	defer func() {
		o.cleanup()
		o.Reporter.Exited(res)
	}()
	// A task that ran to its end, or to its timeout, sends what it left,
	// failed or not: its files are what tells why. A canceled or drained
	// one does not.
	if len(o.as.Staging.Outputs) == 0 || (res.Reason != api.EndExited && res.Reason != api.EndTimedOut) {
		return
	}
	files, err := o.match()
	if err != nil {
		res.Reason, res.Error = api.EndStagingFailed, "output files: "+err.Error()
		return
	}
	for _, f := range files {
		if err := o.fc.send(o.as.AttemptRef, f, o.opener(f)); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && ae.Code == api.CodeFileTooLarge {
				res.Reason = api.EndOutputRefused
			} else {
				res.Reason = api.EndStagingFailed
			}
			res.Error = err.Error()
			return
		}
	}
}

// match lists the output files, as the task's account with --run-as-user.
func (o *outputSender) match() ([]string, error) {
	if o.acct == nil {
		return staging.MatchOutputs(o.dir, o.as.Staging.Outputs)
	}
	var out bytes.Buffer
	if err := stageAs(*o.acct, nil, &out, stageMatch, append([]string{o.dir}, o.as.Staging.Outputs...)...); err != nil {
		return nil, err
	}
	var files []string
	for _, f := range strings.Split(out.String(), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files, nil
}

// opener opens output rel for reading: in place, or with --run-as-user
// through the account's helper, streamed (nothing is copied to the agent's
// disk, so a huge or sparse output cannot fill it).
func (o *outputSender) opener(rel string) func() (io.ReadCloser, error) {
	if o.acct == nil {
		return func() (io.ReadCloser, error) { return os.Open(filepath.Join(o.dir, filepath.FromSlash(rel))) }
	}
	return func() (io.ReadCloser, error) { return stageStream(*o.acct, stageGet, o.dir, rel) }
}

// stagingClient moves an attempt's files over HTTPS on the cluster port,
// with the agent's own certificate: the same mutual TLS as the session,
// on a connection of its own so a large file never holds up heartbeats,
// assignments or results.
type stagingClient struct {
	hc   *http.Client
	base string
}

func (a *Agent) stagingClient() (*stagingClient, error) {
	if a.plaintext() {
		return nil, errors.New("this agent talks to the coordinator over the plaintext migration listener; files are only staged over TLS: finish the migration to TLS (ward migrate) to run jobs with files")
	}
	a.mu.Lock()
	addr := a.sessionAddr
	a.mu.Unlock()
	if addr == "" {
		return nil, errors.New("no coordinator session to stage files through")
	}
	tr := &http.Transport{TLSClientConfig: a.clientTLS(addr, transport.ALPNHTTP), ResponseHeaderTimeout: 2 * time.Minute, IdleConnTimeout: 30 * time.Second}
	return &stagingClient{hc: &http.Client{Transport: tr}, base: "https://" + addr}, nil
}

func (fc *stagingClient) close() { fc.hc.CloseIdleConnections() }

func attemptPath(r api.AttemptRef) string {
	return fmt.Sprintf("/v1/staging/attempts/%s/%d/%d", url.PathEscape(r.Job), r.Task, r.Attempt)
}

// fetch brings input n to its path in dir, verified: a file whose size or
// SHA-256 is not what the job names is discarded, CHECKSUM_MISMATCH.
func (fc *stagingClient) fetch(ctx context.Context, ref api.AttemptRef, n int, in api.StagedFile, dir string) error {
	want, err := staging.ParseSum(in.SHA256)
	if err != nil {
		return err
	}
	what := "input " + in.Path
	dst := filepath.Join(dir, filepath.FromSlash(in.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var last error
	for try := range stagingTries {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fc.base+attemptPath(ref)+"/inputs/"+strconv.Itoa(n), nil)
		resp, err := fc.hc.Do(req)
		if err != nil {
			last = fmt.Errorf("fetching %s: %w", what, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			err := apiError(resp)
			resp.Body.Close()
			return fmt.Errorf("fetching %s: %w", what, err)
		}
		err = writeVerified(dst, resp.Body, want, in, what)
		resp.Body.Close()
		var me *staging.MismatchError
		if err == nil || errors.As(err, &me) || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return last
}

// fetchAs brings input n into private, verified, then has acct's helper
// put it in dir.
func (fc *stagingClient) fetchAs(ctx context.Context, ref api.AttemptRef, n int, in api.StagedFile, private, dir string, acct runas.Account) error {
	if err := fc.fetch(ctx, ref, n, in, private); err != nil {
		return err
	}
	src := filepath.Join(private, filepath.FromSlash(in.Path))
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("input %s: %w", in.Path, err)
	}
	defer os.Remove(src)
	defer f.Close()
	mode := "644"
	if in.Exec {
		mode = "755"
	}
	if err := stageAs(acct, f, io.Discard, stagePut, dir, in.Path, mode); err != nil {
		return fmt.Errorf("input %s into %s: %w", in.Path, dir, err)
	}
	return nil
}

// writeVerified writes r to dst through a temporary file, which becomes
// dst only when its size and SHA-256 are the input's.
func writeVerified(dst string, r io.Reader, want staging.Sum, in api.StagedFile, what string) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".ward-input-*")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(f.Name())
	n, got, err := staging.Copy(f, r, in.Size, nil)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var tl *staging.TooLargeError
	if errors.As(err, &tl) || (err == nil && n != in.Size) {
		// Bytes missing or extra: the file is not the one the job names.
		return &staging.MismatchError{What: what, Want: want, Got: got, Size: n}
	}
	if err != nil {
		return fmt.Errorf("receiving %s: %w", what, err)
	}
	if err := staging.Verify(what, want, got, n); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if in.Exec {
		mode = 0o755
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return os.Rename(f.Name(), dst)
}

// send sends one output file: its SHA-256 first (a read of its own), then
// its bytes, which the coordinator keeps only if they hash the same.
//
// open gives the file's bytes; a file that can seek is read twice through
// one open, anything else (a run-as helper's stream) is opened twice, and
// the coordinator's check of the SHA-256 catches a file changed between.
func (fc *stagingClient) send(ref api.AttemptRef, rel string, open func() (io.ReadCloser, error)) error {
	what := "output " + rel
	var last error
	for try := range stagingTries {
		if try > 0 {
			time.Sleep(time.Duration(try) * time.Second)
		}
		f, err := open()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		sum, size, err := staging.SumFile(f)
		if s, ok := f.(io.Seeker); ok && err == nil {
			_, err = s.Seek(0, io.SeekStart)
		} else if err == nil {
			if err = f.Close(); err == nil {
				f, err = open()
			}
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		req, _ := http.NewRequest(http.MethodPut, fc.base+attemptPath(ref)+"/outputs?path="+url.QueryEscape(rel), io.LimitReader(f, size))
		req.ContentLength = size
		req.Header.Set(api.HeaderSHA256, sum.String())
		resp, err := fc.hc.Do(req)
		f.Close()
		if err != nil {
			last = fmt.Errorf("sending %s: %w", what, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			err := apiError(resp)
			resp.Body.Close()
			return fmt.Errorf("sending %s: %w", what, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	return last
}

// apiError reads the coordinator's JSON error.
func apiError(resp *http.Response) error {
	var body api.ErrorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil || body.Error == nil {
		return fmt.Errorf("the coordinator answered %s", resp.Status)
	}
	return body.Error
}
