package staging

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"testing"
	"time"
)

func TestPlanRetention(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cutoff := now.Add(-time.Hour)
	old, fresh := cutoff.Add(-time.Minute), cutoff.Add(time.Minute)
	sum := func(name string) Sum { return sha256.Sum256([]byte(name)) }
	blob := func(name string, at time.Time) BlobInfo {
		return BlobInfo{Sum: sum(name), Size: int64(len(name)), Modified: at}
	}
	out := func(job, name string) OutputRef {
		return OutputRef{Job: job, Key: "staging/out/" + job + "/" + name, Sum: sum(name), Size: int64(len(name))}
	}
	tests := []struct {
		name        string
		holders     []Holder
		outputs     []OutputRef
		blobs       []BlobInfo
		wantRemove  []string
		wantJobs    []JobPurge
		wantOrphans int
	}{
		{
			name:       "an expired job's inputs and outputs go",
			holders:    []Holder{{Job: "1", Expired: true, Inputs: []Sum{sum("in")}}},
			outputs:    []OutputRef{out("1", "result")},
			blobs:      []BlobInfo{blob("in", old), blob("result", old)},
			wantRemove: []string{"in", "result"},
			wantJobs:   []JobPurge{{Job: "1", Keys: []string{"staging/out/1/result"}, Inputs: 1, Outputs: 1, Removed: 2, Freed: 8}},
		},
		{
			name:       "an input shared with a job still in retention stays",
			holders:    []Holder{{Job: "1", Expired: true, Inputs: []Sum{sum("in")}}, {Job: "2", Inputs: []Sum{sum("in")}}},
			blobs:      []BlobInfo{blob("in", old)},
			wantRemove: nil,
			wantJobs:   []JobPurge{{Job: "1", Inputs: 1, Kept: 1}},
		},
		{
			name:       "an output that is another live job's output too stays; the expired job's record goes",
			holders:    []Holder{{Job: "1", Expired: true}, {Job: "2"}},
			outputs:    []OutputRef{out("1", "same"), out("2", "same")},
			blobs:      []BlobInfo{blob("same", old)},
			wantRemove: nil,
			wantJobs:   []JobPurge{{Job: "1", Keys: []string{"staging/out/1/same"}, Outputs: 1, Kept: 1}},
		},
		{
			name:       "a blob claimed after the cutoff (an upload found it stored) stays",
			holders:    []Holder{{Job: "1", Expired: true, Inputs: []Sum{sum("in")}}},
			blobs:      []BlobInfo{blob("in", fresh)},
			wantRemove: nil,
			wantJobs:   []JobPurge{{Job: "1", Inputs: 1, Kept: 1}},
		},
		{
			name:        "an old upload no job uses goes; a fresh one stays",
			blobs:       []BlobInfo{blob("never-submitted", old), blob("about-to-be-submitted", fresh)},
			wantRemove:  []string{"never-submitted"},
			wantOrphans: 1,
		},
		{
			name:    "output records of a job not in memory are kept, with their blob",
			outputs: []OutputRef{out("9", "unknown")},
			blobs:   []BlobInfo{blob("unknown", old)},
		},
		{
			name:        "a purged job is not reported again, and its leftover input goes once no one else needs it",
			holders:     []Holder{{Job: "1", Expired: true, Purged: true, Inputs: []Sum{sum("in")}}},
			blobs:       []BlobInfo{blob("in", old)},
			wantRemove:  []string{"in"},
			wantOrphans: 1,
		},
		{
			name:       "two expired jobs sharing an input: removed once, counted once",
			holders:    []Holder{{Job: "2", Expired: true, Inputs: []Sum{sum("in")}}, {Job: "1", Expired: true, Inputs: []Sum{sum("in")}}},
			blobs:      []BlobInfo{blob("in", old)},
			wantRemove: []string{"in"},
			wantJobs:   []JobPurge{{Job: "1", Inputs: 1}, {Job: "2", Inputs: 1, Removed: 1, Freed: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := PlanRetention(tt.holders, tt.outputs, tt.blobs, cutoff)
			var want []Sum
			for _, n := range tt.wantRemove {
				want = append(want, sum(n))
			}
			if !slices.Equal(plan.Remove, want) {
				t.Fatalf("removes %d blobs, want %v", len(plan.Remove), tt.wantRemove)
			}
			if len(plan.Jobs) != len(tt.wantJobs) {
				t.Fatalf("jobs %+v, want %+v", plan.Jobs, tt.wantJobs)
			}
			for i, j := range plan.Jobs {
				w := tt.wantJobs[i]
				if j.Job != w.Job || !slices.Equal(j.Keys, w.Keys) || j.Inputs != w.Inputs || j.Outputs != w.Outputs || j.Removed != w.Removed || j.Kept != w.Kept || j.Freed != w.Freed {
					t.Fatalf("job %d: %+v, want %+v", i, j, w)
				}
			}
			if plan.Orphans != tt.wantOrphans {
				t.Fatalf("orphans %d, want %d", plan.Orphans, tt.wantOrphans)
			}
		})
	}
}

// RemoveIfOlder spares a blob touched after the cutoff; List sees what is
// stored.
func TestBlobsListTouchRemove(t *testing.T) {
	b, err := OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("staged bytes")
	sum := Sum(sha256.Sum256(data))
	if _, err := b.Put(bytes.NewReader(data), sum, "f", 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	list, err := b.List()
	if err != nil || len(list) != 1 || list[0].Sum != sum || list[0].Size != int64(len(data)) {
		t.Fatalf("List: %+v, %v", list, err)
	}
	past := time.Now().Add(-2 * time.Hour)
	cutoff := time.Now().Add(-time.Hour)
	b.Touch(sum, time.Now())
	if removed, err := b.RemoveIfOlder(sum, cutoff); removed || err != nil {
		t.Fatalf("a blob claimed after the cutoff was removed: %v %v", removed, err)
	}
	b.Touch(sum, past)
	if removed, err := b.RemoveIfOlder(sum, cutoff); !removed || err != nil {
		t.Fatalf("an old blob was not removed: %v %v", removed, err)
	}
	if _, ok := b.Stat(sum); ok {
		t.Fatal("still there")
	}
	if removed, err := b.RemoveIfOlder(sum, cutoff); removed || err != nil {
		t.Fatalf("removing a missing blob: %v %v", removed, err)
	}
}
