package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// TestOutputDirHold: a job submitted for `ward run --output-dir`
// (hold_for_follower) places nothing until its submitter follows it for
// all output, since output past the cap reaches only live followers. Another
// reader's follower does not release it, a coordinator restart holds it
// again, and the submitter's follower gets every byte.
func TestOutputDirHold(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--max-output-bytes", "4096")
	c.startAgent("n1", 2)
	admin := c.httpClient(certAndKey(t, c))
	viewer := c.addUser("watcher", "viewer")
	other := c.httpClient(contextCertAndKey(t, viewer.ctxPath))

	body := `{"argv":["sh","-c","head -c 10000 /dev/zero | tr '\\0' x"],"count":1,"hold_for_follower":true}`
	resp, err := admin.Post("https://"+c.cluster+"/v1/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var job api.Job
	if err := json.NewDecoder(resp.Body).Decode(&job); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %s %v", resp.Status, err)
	}
	resp.Body.Close()
	logs := "https://" + c.cluster + "/v1/jobs/" + job.ID + "/logs?follow=1&all=1"
	stillQueued := func(when string) {
		t.Helper()
		time.Sleep(1500 * time.Millisecond) // a free slot all along: only the hold keeps it queued
		if d := c.job(job.ID); d.Counts[api.TaskQueued] != 1 {
			t.Fatalf("%s: the held job was placed: %+v", when, d.Counts)
		}
	}
	stillQueued("before any follower")

	// A viewer follows it with all=1: not the submitter, no release.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, logs, nil)
	if resp, err := other.Do(req); err == nil {
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("viewer's follow: %s", resp.Status)
		}
		<-ctx.Done()
		resp.Body.Close()
	}
	cancel()
	stillQueued("after another reader followed it")

	// A restart keeps the hold.
	c.coord.kill9()
	c.restartCoordinator()
	stillQueued("after a coordinator restart")

	resp, err = admin.Get(logs)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, dec := 0, json.NewDecoder(resp.Body)
	for {
		var ch api.LogChunk
		if err := dec.Decode(&ch); err != nil {
			t.Fatalf("follow: %v after %d bytes", err, got)
		}
		if ch.End {
			if ch.JobState != api.JobCompleted {
				t.Fatalf("job ended %s", ch.JobState)
			}
			break
		}
		got += len(ch.Data)
	}
	if got != 10000 {
		t.Fatalf("the submitter's follower of all output got %d bytes of 10000", got)
	}
}
