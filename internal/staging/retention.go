package staging

import (
	"sort"
	"time"
)

// Holder is a job's claim on staged files, for retention.
type Holder struct {
	Job string
	// Expired: the job ended at least the retention ago, so its files may
	// go. Purged: that was already done for this end of the job (it is
	// still listed so that its inputs protect nothing).
	Expired, Purged bool
	Inputs          []Sum
}

// OutputRef is one stored output record: the store key naming it and the
// blob it refers to.
type OutputRef struct {
	Job  string
	Key  string
	Sum  Sum
	Size int64
}

// JobPurge is what retention removes for one expired job.
type JobPurge struct {
	Job string
	// Keys are the job's output records to delete.
	Keys []string
	// Inputs and Outputs count the job's files; Removed the blobs removed
	// for them, Freed their bytes; Kept the blobs another job (or a recent
	// upload) still uses.
	Inputs, Outputs, Removed, Kept int
	Freed                          int64
}

// RetentionPlan is what one retention pass removes.
type RetentionPlan struct {
	Jobs []JobPurge // expired jobs not purged yet, by job
	// Remove are the blobs to delete (each only if not stored or claimed
	// after the cutoff by then: Blobs.RemoveIfOlder).
	Remove []Sum
	// Orphans are blobs that no output record and no job not yet purged
	// refers to, older than the cutoff (uploads never submitted, or left
	// by an earlier pass while in use); OrphanBytes their size.
	Orphans     int
	OrphanBytes int64
}

// PlanRetention decides what staged files to remove: the inputs and
// outputs of jobs that expired (ended at least the retention ago), and
// uploads no job uses that are older than cutoff. A blob is kept while a
// job that has not expired uses it (as input or output), or when it was
// stored or claimed after cutoff; an output record of a job not among
// holders is kept, with its blob.
func PlanRetention(holders []Holder, outputs []OutputRef, blobs []BlobInfo, cutoff time.Time) RetentionPlan {
	expired := map[string]bool{}
	referenced := map[Sum]bool{}
	keep := map[Sum]bool{}
	for _, h := range holders {
		expired[h.Job] = h.Expired
		for _, s := range h.Inputs {
			referenced[s] = referenced[s] || !h.Purged
			if !h.Expired {
				keep[s] = true
			}
		}
	}
	for _, o := range outputs {
		referenced[o.Sum] = true
		if e, known := expired[o.Job]; !known || !e {
			keep[o.Sum] = true
		}
	}
	info := map[Sum]BlobInfo{}
	for _, b := range blobs {
		info[b.Sum] = b
		if b.Modified.After(cutoff) {
			keep[b.Sum] = true
		}
	}
	var plan RetentionPlan
	removing := map[Sum]bool{}
	remove := func(s Sum, jp *JobPurge) {
		b, stored := info[s]
		switch {
		case keep[s]:
			jp.Kept++
		case !stored || removing[s]:
			// gone already, or counted for another job
		default:
			removing[s] = true
			plan.Remove = append(plan.Remove, s)
			jp.Removed++
			jp.Freed += b.Size
		}
	}
	byJob := map[string]*JobPurge{}
	var order []string
	for _, h := range holders {
		if h.Expired && !h.Purged {
			byJob[h.Job] = &JobPurge{Job: h.Job, Inputs: len(h.Inputs)}
			order = append(order, h.Job)
		}
	}
	sort.Strings(order)
	for _, o := range outputs {
		if jp := byJob[o.Job]; jp != nil {
			jp.Keys = append(jp.Keys, o.Key)
			jp.Outputs++
		}
	}
	for _, h := range holders {
		if jp := byJob[h.Job]; jp != nil {
			for _, s := range h.Inputs {
				remove(s, jp)
			}
		}
	}
	for _, o := range outputs {
		if jp := byJob[o.Job]; jp != nil {
			remove(o.Sum, jp)
		}
	}
	for _, j := range order {
		plan.Jobs = append(plan.Jobs, *byJob[j])
	}
	for _, b := range blobs {
		if !referenced[b.Sum] && !keep[b.Sum] && !removing[b.Sum] {
			removing[b.Sum] = true
			plan.Remove = append(plan.Remove, b.Sum)
			plan.Orphans++
			plan.OrphanBytes += b.Size
		}
	}
	return plan
}
