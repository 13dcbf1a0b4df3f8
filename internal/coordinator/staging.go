package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/staging"
	"github.com/wardcluster/ward/internal/store"
)

// fileStaging is the coordinator's side of file staging: the blobs on
// disk (inputs and outputs alike, by checksum) and the output bytes each
// job holds, against staging_max_job_bytes.
type fileStaging struct {
	blobs *staging.Blobs
	mu    sync.Mutex
	used  map[string]int64 // job → output bytes stored or being received
	// purged: job → the end after which retention deleted its files
	// (loaded by the first retention pass; nil until then).
	purged map[string]time.Time
}

func newFileStaging(dir string) (*fileStaging, error) {
	b, err := staging.OpenBlobs(dir)
	if err != nil {
		return nil, err
	}
	return &fileStaging{blobs: b, used: map[string]int64{}}, nil
}

// Store keys of output files: staging/out/<job>/<task>/<attempt>/<path>.
const stagingOutPrefix = "staging/out/"

func stagedOutputKey(job string, task, attempt int, path string) string {
	return fmt.Sprintf("%s%s/%s/%s/%s", stagingOutPrefix, job, padTask(task), padTask(attempt), path)
}

// outputRecord is one stored output file.
type outputRecord struct {
	SHA256 string    `json:"sha256"`
	Size   int64     `json:"size"`
	Stored time.Time `json:"stored"`
}

// progressReader pushes a slow upload's read deadline on while bytes
// arrive: cluster_read_timeout bounds a stall, not the whole transfer.
type progressReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	next time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	if now := time.Now(); now.After(p.next) {
		p.rc.SetReadDeadline(now.Add(p.idle))
		p.next = now.Add(p.idle / 4)
	}
	return p.r.Read(b)
}

func (c *Coordinator) uploadBody(w http.ResponseWriter, r *http.Request) io.Reader {
	return &progressReader{r: r.Body, rc: http.NewResponseController(w), idle: c.cfg.Limits.ClusterReadTimeout.D()}
}

// stagingBody reports whether r streams a staged file, whose size limits
// are staging's own instead of max_request_bytes.
func stagingBody(r *http.Request) bool {
	return r.Method == http.MethodPut && (strings.HasPrefix(r.URL.Path, "/v1/staging/") || isBlobReplica(r))
}

func (c *Coordinator) fileTooLarge(what string) *staging.TooLargeError {
	return &staging.TooLargeError{What: what, Limit: c.cfg.StagingMaxFileBytes, Setting: "staging_max_file_bytes"}
}

// apiStagingUpload is PUT /v1/staging/files/{sum}: a client sends a job's
// input before submitting it. The bytes are kept only if their SHA-256 is
// the one in the path.
func (c *Coordinator) apiStagingUpload(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	if err := c.allow(p, authz.JobSubmit); err != nil {
		return err
	}
	sum, err := staging.ParseSum(r.PathValue("sum"))
	if err != nil {
		return api.Errorf(api.CodeInvalidArgument, "upload to /v1/staging/files/sha256:<hex of the file's SHA-256>", "%v", err)
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = sum.String()
	}
	if r.ContentLength < 0 {
		return api.Errorf(api.CodeInvalidArgument, "send the file's size in Content-Length", "the upload of %s has no Content-Length", name)
	}
	if r.ContentLength > c.cfg.StagingMaxFileBytes {
		return staging.APIError(c.fileTooLarge("input " + name + " (" + strconv.FormatInt(r.ContentLength, 10) + " bytes)"))
	}
	if size, ok := c.files.blobs.Stat(sum); ok && size == r.ContentLength {
		// Claimed now: retention keeps it for the job about to be submitted.
		c.files.blobs.Touch(sum, c.now())
		return writeJSON(w, http.StatusOK, api.StagedFile{SHA256: sum.String(), Size: size})
	}
	n, err := c.files.blobs.Put(c.uploadBody(w, r), sum, "input "+name, c.cfg.StagingMaxFileBytes, c.fileTooLarge("input "+name))
	if err != nil {
		return c.stagingFailed(p, "input "+name, err)
	}
	c.Record(p, audit.Event{Type: "file.upload", Target: sum.String(), Detail: map[string]string{"name": name, "size": strconv.FormatInt(n, 10)}})
	c.replicateBlob(r.Context(), sum)
	return writeJSON(w, http.StatusOK, api.StagedFile{SHA256: sum.String(), Size: n})
}

// stagingFailed turns a failed transfer into the API's error, and records
// a checksum mismatch in the audit log: bytes changed on the way.
func (c *Coordinator) stagingFailed(p authz.Principal, what string, err error) error {
	if e := staging.APIError(err); e != nil {
		if e.Code == api.CodeChecksumMismatch {
			c.log.Warn("staged file checksum mismatch", "file", what, "from", p.String(), "err", err)
			c.Record(p, audit.Event{Type: "file.checksum_mismatch", Target: what, Result: string(api.CodeChecksumMismatch), Detail: map[string]string{"error": err.Error()}})
		}
		return e
	}
	return api.Errorf(api.CodeUnavailable, "send the file again", "receiving %s failed: %v", what, err).WithCause(err)
}

// checkStaging validates a submitted job's files: clean, distinct paths,
// inputs already uploaded with the sizes given, and the limits.
func (c *Coordinator) checkStaging(s *api.JobSpec) error {
	bad := func(format string, args ...any) error {
		return api.Errorf(api.CodeInvalidArgument, "use --input LOCAL[:REMOTE] and --output-file GLOB as `ward run` does", format, args...)
	}
	if len(s.Inputs) > api.MaxJobInputs || len(s.Outputs) > api.MaxJobOutputs {
		return bad("a job stages at most %d inputs and %d output patterns; it has %d and %d", api.MaxJobInputs, api.MaxJobOutputs, len(s.Inputs), len(s.Outputs))
	}
	seen := map[string]bool{}
	var total int64
	for i := range s.Inputs {
		in := &s.Inputs[i]
		p, err := staging.CleanRemote(in.Path)
		if err != nil {
			return bad("input %d: %v", i, err)
		}
		if seen[p] {
			return bad("two inputs go to %s", p)
		}
		seen[p], in.Path = true, p
		sum, err := staging.ParseSum(in.SHA256)
		if err != nil {
			return bad("input %s: %v", p, err)
		}
		in.SHA256 = sum.String()
		if in.Size > c.cfg.StagingMaxFileBytes {
			return staging.APIError(c.fileTooLarge("input " + p))
		}
		size, ok := c.files.blobs.Stat(sum)
		if !ok || size != in.Size {
			return api.Errorf(api.CodeFailedPrecondition, "upload it first (PUT /v1/staging/files/"+sum.String()+"); `ward run --input` does", "input %s (%s, %d bytes) is not on the coordinator", p, sum, in.Size)
		}
		total += in.Size
	}
	if total > c.cfg.StagingMaxJobBytes {
		return staging.APIError(&staging.TooLargeError{What: fmt.Sprintf("the job's inputs (%d bytes together)", total), Limit: c.cfg.StagingMaxJobBytes, Setting: "staging_max_job_bytes"})
	}
	for _, g := range s.Outputs {
		if err := staging.CheckGlob(g); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// attemptOf reads an attempt from a staging path and checks that p is the
// agent it runs on, and that it is still running there.
func (c *Coordinator) attemptOf(r *http.Request, p authz.Principal) (*sched.Job, sched.Ref, error) {
	task, err1 := strconv.Atoi(r.PathValue("task"))
	attempt, err2 := strconv.Atoi(r.PathValue("attempt"))
	ref := sched.Ref{Job: r.PathValue("job"), Task: task, Attempt: attempt}
	if err1 != nil || err2 != nil {
		return nil, ref, api.Errorf(api.CodeInvalidArgument, "", "%s is not an attempt", r.URL.Path)
	}
	if p.ID.Cluster != c.cfg.Cluster || p.ID.Role != pki.RoleAgent {
		return nil, ref, api.Errorf(api.CodePermissionDenied, "only the agent that runs an attempt moves its files", "%s is not an agent of cluster %s", p.ID, c.cfg.Cluster)
	}
	if serial, ok := parseSerial(p.CertSerial); ok && c.revoked.Contains(serial) {
		return nil, ref, api.Errorf(api.CodeCertRevoked, "", "the certificate %s of %s is revoked", p.CertSerial, p.ID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.cl.Job(ref.Job)
	if !ok || task < 0 || task >= len(j.Tasks) {
		return nil, ref, api.Errorf(api.CodeNotFound, "", "no task %d of job %s", task, ref.Job)
	}
	a := j.Tasks[task].Current()
	if a == nil || a.N != attempt || a.Node != p.ID.Name || !a.State.Active() {
		return nil, ref, api.Errorf(api.CodeFailedPrecondition, "the attempt ended or moved; its files are not wanted any more",
			"attempt %d of task %d of job %s is not running on %s", attempt, task, ref.Job, p.ID.Name)
	}
	return j, ref, nil
}

// apiStagingInput is GET /v1/staging/attempts/{job}/{task}/{attempt}/inputs/{n}:
// the agent running an attempt fetches the job's input n.
func (c *Coordinator) apiStagingInput(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	j, _, err := c.attemptOf(r, p)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 || n >= len(j.Spec.Inputs) {
		return api.Errorf(api.CodeNotFound, "", "job %s has no input %s", j.ID, r.PathValue("n"))
	}
	in := j.Spec.Inputs[n]
	sum, err := staging.ParseSum(in.SHA256)
	if err != nil {
		return err
	}
	return c.serveBlob(r.Context(), w, sum, "input "+in.Path)
}

// serveBlob streams a stored file with its checksum and size.
func (c *Coordinator) serveBlob(ctx context.Context, w http.ResponseWriter, sum staging.Sum, what string) error {
	f, size, err := c.openBlob(ctx, sum, what)
	if errors.Is(err, staging.ErrNoBlob) {
		return api.Errorf(api.CodeNotFound, "the coordinator's staging directory lost it; submit the job again", "%s (%s) is not on the coordinator", what, sum)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set(api.HeaderSHA256, sum.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	staging.Copy(w, f, -1, nil)
	return nil
}

// apiStagingOutput is PUT /v1/staging/attempts/{job}/{task}/{attempt}/outputs?path=P:
// the agent sends a file the attempt left. It is kept only if its
// checksum matches the header, and only within the size limits.
func (c *Coordinator) apiStagingOutput(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	j, ref, err := c.attemptOf(r, p)
	if err != nil {
		return err
	}
	path, err := staging.CleanRemote(r.URL.Query().Get("path"))
	if err != nil {
		return api.Errorf(api.CodeInvalidArgument, "", "output path: %v", err)
	}
	what := fmt.Sprintf("output %s of task %d", path, ref.Task)
	sum, err := staging.ParseSum(r.Header.Get(api.HeaderSHA256))
	if err != nil {
		return api.Errorf(api.CodeInvalidArgument, "send the file's checksum in "+api.HeaderSHA256, "%s: %v", what, err)
	}
	size := r.ContentLength
	if size < 0 {
		return api.Errorf(api.CodeInvalidArgument, "send the file's size in Content-Length", "%s has no Content-Length", what)
	}
	if size > c.cfg.StagingMaxFileBytes {
		return staging.APIError(c.fileTooLarge(fmt.Sprintf("%s (%d bytes)", what, size)))
	}
	if err := c.reserveOutput(r.Context(), j.ID, size); err != nil {
		return err
	}
	kept := false
	defer func() {
		if !kept {
			c.files.release(j.ID, size)
		}
	}()
	n, err := c.files.blobs.Put(c.uploadBody(w, r), sum, what, size, c.fileTooLarge(what))
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d bytes arrived of the %d announced", what, n, size)
	}
	if err != nil {
		return c.stagingFailed(p, what, err)
	}
	rec := outputRecord{SHA256: sum.String(), Size: n, Stored: c.now().UTC()}
	val, _ := json.Marshal(rec)
	durable := make(chan error, 1)
	c.journal.Commit([]store.Op{store.Put(stagedOutputKey(ref.Job, ref.Task, ref.Attempt, path), val)}, func(err error) { durable <- err })
	if err := <-durable; err != nil {
		return api.Errorf(api.CodeUnavailable, "the agent sends it again", "storing %s: %v", what, err)
	}
	kept = true
	c.replicateBlob(r.Context(), sum)
	return writeJSON(w, http.StatusOK, api.OutputFile{Task: ref.Task, Attempt: ref.Attempt, Path: path, Size: n, SHA256: rec.SHA256, Stored: rec.Stored})
}

// reserveOutput counts size against the job's staging_max_job_bytes
// before the bytes arrive, so concurrent uploads cannot pass it together.
// After a restart the job's stored outputs are counted once.
func (c *Coordinator) reserveOutput(ctx context.Context, job string, size int64) error {
	fs := c.files
	fs.mu.Lock()
	_, known := fs.used[job]
	fs.mu.Unlock()
	if !known {
		var total int64
		err := c.st.Scan(ctx, stagingOutPrefix+job+"/", func(rec store.Record) error {
			var o outputRecord
			if json.Unmarshal(rec.Value, &o) == nil {
				total += o.Size
			}
			return nil
		})
		if err != nil {
			return api.Errorf(api.CodeUnavailable, "the agent sends it again", "counting job %s's outputs: %v", job, err)
		}
		fs.mu.Lock()
		if _, ok := fs.used[job]; !ok {
			fs.used[job] = total
		}
		fs.mu.Unlock()
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.used[job]+size > c.cfg.StagingMaxJobBytes {
		return staging.APIError(&staging.TooLargeError{
			What:  fmt.Sprintf("job %s's output files (%d bytes stored, %d more sent)", job, fs.used[job], size),
			Limit: c.cfg.StagingMaxJobBytes, Setting: "staging_max_job_bytes"})
	}
	fs.used[job] += size
	return nil
}

func (fs *fileStaging) release(job string, size int64) {
	fs.mu.Lock()
	fs.used[job] -= size
	fs.mu.Unlock()
}

// Outputs lists the files a job's tasks left (one task's, when task >= 0):
// for each task, those of its latest attempt that sent any.
func (c *Coordinator) Outputs(ctx context.Context, p authz.Principal, id string, task int) ([]api.OutputFile, error) {
	scope, err := c.decide(p, authz.JobRead)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	j, err := c.findJobLocked(id)
	if err == nil {
		err = c.ownJob(p, scope, authz.JobRead, j)
	}
	if err == nil && task >= len(j.Tasks) {
		err = api.Errorf(api.CodeInvalidArgument, "task indexes run from 0", "job %s has %d tasks; there is no task %d", id, len(j.Tasks), task)
	}
	var finished time.Time
	if err == nil && j.Terminal() {
		finished = j.Finished
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	prefix := stagingOutPrefix + id + "/"
	if task >= 0 {
		prefix += padTask(task) + "/"
	}
	out := []api.OutputFile{}
	err = c.st.Scan(ctx, prefix, func(rec store.Record) error {
		parts := strings.SplitN(strings.TrimPrefix(rec.Key, stagingOutPrefix+id+"/"), "/", 3)
		if len(parts) != 3 {
			return nil
		}
		t, err1 := strconv.Atoi(parts[0])
		a, err2 := strconv.Atoi(parts[1])
		var o outputRecord
		if err1 != nil || err2 != nil || json.Unmarshal(rec.Value, &o) != nil {
			return nil
		}
		f := api.OutputFile{Task: t, Attempt: a, Path: parts[2], Size: o.Size, SHA256: o.SHA256, Stored: o.Stored}
		// Keys sort by task, then attempt: a later attempt's files replace
		// an earlier one's.
		if n := len(out); n > 0 && out[n-1].Task == t && out[n-1].Attempt < a {
			for n > 0 && out[n-1].Task == t {
				n--
			}
			out = out[:n]
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "retry", "listing job %s's outputs: %v", id, err)
	}
	if len(out) == 0 {
		at, purged, err := c.purgedAt(ctx, id, finished)
		if err != nil {
			return nil, api.Errorf(api.CodeUnavailable, "retry", "reading job %s's staging record: %v", id, err)
		}
		if purged {
			return nil, c.purgedError(api.CodeNotFound, id, at, "its output files are gone", "fetch outputs within staging_retention of a job's end, or raise staging_retention")
		}
	}
	return out, nil
}

func (c *Coordinator) apiJobOutputs(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	task := -1
	if s := r.URL.Query().Get("task"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return api.Errorf(api.CodeInvalidArgument, "pass a task index such as --task 3", "task %q is not an index", s)
		}
		task = n
	}
	return reply[[]api.OutputFile](w)(c.Outputs(r.Context(), p, r.PathValue("id"), task))
}

// apiJobOutputFile is GET /v1/jobs/{id}/outputs/{task}/file?path=P: one
// file a task left, from its latest attempt that sent any.
func (c *Coordinator) apiJobOutputFile(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	task, err := strconv.Atoi(r.PathValue("task"))
	if err != nil || task < 0 {
		return api.Errorf(api.CodeInvalidArgument, "pass a task index", "task %q is not an index", r.PathValue("task"))
	}
	f, body, err := c.OpenOutput(r.Context(), p, r.PathValue("id"), task, r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	defer body.Close()
	w.Header().Set(api.HeaderSHA256, f.SHA256)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(f.Size, 10))
	w.WriteHeader(http.StatusOK)
	staging.Copy(w, body, -1, nil)
	return nil
}

// OpenOutput opens one file a task left (from its latest attempt that sent
// any), for whoever may read the job (a submitter: only its own jobs). The
// download is audited; the caller closes the file.
func (c *Coordinator) OpenOutput(ctx context.Context, p authz.Principal, id string, task int, path string) (api.OutputFile, io.ReadCloser, error) {
	files, err := c.Outputs(ctx, p, id, task)
	if err != nil {
		return api.OutputFile{}, nil, err
	}
	for _, f := range files {
		if f.Path != path {
			continue
		}
		sum, err := staging.ParseSum(f.SHA256)
		if err != nil {
			return api.OutputFile{}, nil, err
		}
		body, size, err := c.openBlob(ctx, sum, "output "+path)
		if errors.Is(err, staging.ErrNoBlob) {
			return api.OutputFile{}, nil, api.Errorf(api.CodeNotFound, "the coordinator's staging directory no longer holds it; run the task again (`ward job requeue`)",
				"output %s of task %d of job %s (%s) is not on the coordinator", path, task, id, sum)
		}
		if err != nil {
			return api.OutputFile{}, nil, err
		}
		f.Size = size
		c.Record(p, audit.Event{Type: "file.download", Target: fmt.Sprintf("%s/%d/%s", id, task, path), Detail: map[string]string{"sha256": f.SHA256, "size": strconv.FormatInt(f.Size, 10)}})
		return f, body, nil
	}
	return api.OutputFile{}, nil, api.Errorf(api.CodeNotFound, "`ward job output ID --task N` lists what the task left", "task %d of job %s left no output %q", task, id, path)
}

// auditAgentMismatch records an input an agent refused because its bytes
// did not have the job's checksum: they changed on the coordinator's disk
// or on the way. Written off the caller's lock.
func (c *Coordinator) auditAgentMismatch(node string, r api.TaskResult) {
	ev := audit.Event{Type: "file.checksum_mismatch", Actor: pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleAgent, Name: node}.String(),
		Target: fmt.Sprintf("%s/%d/%d", r.Job, r.Task, r.Attempt), Result: string(api.CodeChecksumMismatch), Detail: map[string]string{"error": r.Error}}
	c.log.Warn("an agent refused a staged input: checksum mismatch", "node", node, "job", r.Job, "task", r.Task, "attempt", r.Attempt, "err", r.Error)
	go c.audit.Record(ev)
}
