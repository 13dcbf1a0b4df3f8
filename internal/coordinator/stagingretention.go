package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/staging"
	"github.com/wardcluster/ward/internal/store"
)

// Store keys of purge records: staging/purged/<job>, written when a job's
// staged files were deleted after staging_retention.
const stagingPurgedPrefix = "staging/purged/"

// purgeRecord says when and after which end of its job a job's staged
// files were deleted (a requeued job that ends again keeps its new files
// until its new end is staging_retention old).
type purgeRecord struct {
	Finished time.Time `json:"finished"`
	Purged   time.Time `json:"purged"`
	Inputs   int       `json:"inputs"`
	Outputs  int       `json:"outputs"`
	Removed  int       `json:"removed"`
	Freed    int64     `json:"freed_bytes"`
}

// stagingRetentionLoop deletes finished jobs' staged files once they
// ended staging_retention ago (leader-only work: it writes the store).
func (c *Coordinator) stagingRetentionLoop(ctx context.Context) {
	keep := c.cfg.StagingRetention.D()
	if keep <= 0 {
		return
	}
	t := time.NewTicker(min(max(keep/4, time.Second), 10*time.Minute))
	defer t.Stop()
	for {
		if err := c.sweepStaging(ctx, keep); err != nil && ctx.Err() == nil {
			c.log.Error("staging retention: staged files of finished jobs were not deleted this time; the next pass tries again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadPurged reads the purge records once.
func (c *Coordinator) loadPurged(ctx context.Context) error {
	fs := c.files
	fs.mu.Lock()
	loaded := fs.purged != nil
	fs.mu.Unlock()
	if loaded {
		return nil
	}
	purged := map[string]time.Time{}
	err := c.st.Scan(ctx, stagingPurgedPrefix, func(rec store.Record) error {
		var p purgeRecord
		if json.Unmarshal(rec.Value, &p) == nil {
			purged[strings.TrimPrefix(rec.Key, stagingPurgedPrefix)] = p.Finished
		}
		return nil
	})
	if err != nil {
		return err
	}
	fs.mu.Lock()
	fs.purged = purged
	fs.mu.Unlock()
	return nil
}

// sweepStaging is one retention pass: it plans (staging.PlanRetention)
// from the jobs, the output records and the blobs on disk, deletes the
// expired jobs' output records and records their purge durably, then
// removes the blobs no one needs, and audits each job as staging.purge.
func (c *Coordinator) sweepStaging(ctx context.Context, keep time.Duration) error {
	if err := c.loadPurged(ctx); err != nil {
		return err
	}
	now := c.now().UTC()
	cutoff := now.Add(-keep)
	var holders []staging.Holder
	finished := map[string]time.Time{}
	c.mu.Lock()
	for _, j := range c.cl.Jobs() {
		if len(j.Spec.Inputs) == 0 && len(j.Spec.Outputs) == 0 {
			continue
		}
		h := staging.Holder{Job: j.ID, Expired: j.Terminal() && !j.Finished.IsZero() && !j.Finished.After(cutoff)}
		if h.Expired {
			finished[j.ID] = j.Finished
		}
		for _, in := range j.Spec.Inputs {
			if s, err := staging.ParseSum(in.SHA256); err == nil {
				h.Inputs = append(h.Inputs, s)
			}
		}
		holders = append(holders, h)
	}
	c.mu.Unlock()
	c.files.mu.Lock()
	for i := range holders {
		h := &holders[i]
		if f, ok := c.files.purged[h.Job]; ok && h.Expired && f.Equal(finished[h.Job]) {
			h.Purged = true
		}
	}
	c.files.mu.Unlock()

	var outs []staging.OutputRef
	err := c.st.Scan(ctx, stagingOutPrefix, func(rec store.Record) error {
		job, _, ok := strings.Cut(strings.TrimPrefix(rec.Key, stagingOutPrefix), "/")
		var o outputRecord
		if !ok || json.Unmarshal(rec.Value, &o) != nil {
			return nil
		}
		if s, err := staging.ParseSum(o.SHA256); err == nil {
			outs = append(outs, staging.OutputRef{Job: job, Key: rec.Key, Sum: s, Size: o.Size})
		}
		return nil
	})
	if err != nil {
		return err
	}
	blobs, err := c.files.blobs.List()
	if err != nil {
		return err
	}
	plan := staging.PlanRetention(holders, outs, blobs, cutoff)
	if len(plan.Jobs) == 0 && len(plan.Remove) == 0 {
		return nil
	}
	// The records first: a crash before the blobs are removed leaves
	// blobs no record names, which the next pass removes.
	var ops []store.Op
	recs := map[string]purgeRecord{}
	for _, jp := range plan.Jobs {
		for _, k := range jp.Keys {
			ops = append(ops, store.Delete(k))
		}
		r := purgeRecord{Finished: finished[jp.Job], Purged: now, Inputs: jp.Inputs, Outputs: jp.Outputs, Removed: jp.Removed, Freed: jp.Freed}
		recs[jp.Job] = r
		ops = append(ops, putJSON(stagingPurgedPrefix+jp.Job, r))
	}
	if len(ops) > 0 {
		done := make(chan error, 1)
		c.journal.Commit(ops, func(err error) { done <- err })
		if err := <-done; err != nil {
			return err
		}
	}
	c.files.mu.Lock()
	for job, r := range recs {
		c.files.purged[job] = r.Finished
		delete(c.files.used, job)
	}
	c.files.mu.Unlock()
	var failed []error
	for _, s := range plan.Remove {
		if _, err := c.files.blobs.RemoveIfOlder(s, cutoff); err != nil {
			failed = append(failed, err)
		}
	}
	c.removeReplicas(ctx, plan.Remove, cutoff) // the other coordinators' copies (blobreplica.go)
	for _, jp := range plan.Jobs {
		c.audit.Record(audit.Event{Type: "staging.purge", Actor: c.ca.id.String(), Target: jp.Job, Result: "ok", Detail: map[string]string{
			"retention": keep.String(), "inputs": strconv.Itoa(jp.Inputs), "outputs": strconv.Itoa(jp.Outputs),
			"files_removed": strconv.Itoa(jp.Removed), "files_kept_in_use": strconv.Itoa(jp.Kept), "bytes_freed": strconv.FormatInt(jp.Freed, 10)}})
		c.log.Info("staging retention: deleted a finished job's staged files", "job", jp.Job, "ended", recs[jp.Job].Finished.Format(time.RFC3339),
			"retention", keep.String(), "inputs", jp.Inputs, "outputs", jp.Outputs, "files_removed", jp.Removed, "kept_in_use", jp.Kept, "bytes_freed", jp.Freed)
	}
	if plan.Orphans > 0 {
		c.audit.Record(audit.Event{Type: "staging.purge", Actor: c.ca.id.String(), Target: "unused uploads", Result: "ok", Detail: map[string]string{
			"retention": keep.String(), "files_removed": strconv.Itoa(plan.Orphans), "bytes_freed": strconv.FormatInt(plan.OrphanBytes, 10)}})
		c.log.Info("staging retention: deleted staged files no job uses", "files", plan.Orphans, "bytes", plan.OrphanBytes, "retention", keep.String())
	}
	return errors.Join(failed...)
}

// purgedAt returns when the staged files of job id, as it ended at
// finished, were deleted after staging_retention (ok false: they were
// not).
func (c *Coordinator) purgedAt(ctx context.Context, id string, finished time.Time) (time.Time, bool, error) {
	if finished.IsZero() {
		return time.Time{}, false, nil
	}
	rec, err := c.st.Get(ctx, stagingPurgedPrefix+id)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	var p purgeRecord
	if err := json.Unmarshal(rec.Value, &p); err != nil || !p.Finished.Equal(finished) {
		return time.Time{}, false, nil
	}
	return p.Purged, true, nil
}

// purgedError explains a job whose staged files retention deleted.
func (c *Coordinator) purgedError(code api.Code, id string, at time.Time, what, fix string) error {
	return api.Errorf(code, fix, "job %s's staged files were deleted at %s, staging_retention (%s) after it ended; %s",
		id, at.UTC().Format(time.RFC3339), c.cfg.StagingRetention.D(), what)
}
