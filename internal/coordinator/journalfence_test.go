package coordinator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/leader"
	"github.com/wardcluster/ward/internal/store"
)

// TestJournalFence: once the journal is fenced on a term, its batches land
// while the term holds; after the term ends the next batch is refused by
// the fence and writes nothing, the term is marked lost, and the error is
// the fence's (which the coordinator reports as "no longer the leader").
func TestJournalFence(t *testing.T) {
	j, g, fatals := startJournal(t)
	term, err := leader.Campaign(context.Background(), g.Store, leader.Info{ID: "me"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	j.setFence(term)
	if err := j.Wait([]store.Op{store.Put("jobs/1", []byte("a"))}); err != nil {
		t.Fatalf("fenced batch while leading: %v", err)
	}
	// The lock passes on behind the journal's back (as when the lease
	// expires while the leader is cut off).
	term.Lease().Release(context.Background())
	err = j.Wait([]store.Op{store.Put("jobs/1", []byte("b"))})
	if !term.Fenced(err) {
		t.Fatalf("batch after the term ended: %v, want the fence to refuse it", err)
	}
	if rec, err := g.Store.Get(context.Background(), "jobs/1"); err != nil || string(rec.Value) != "a" {
		t.Errorf("jobs/1 = %q (%v): the refused batch wrote", rec.Value, err)
	}
	<-term.Done()
	if !errors.Is(term.Err(), leader.ErrLost) {
		t.Errorf("term ended with %v", term.Err())
	}
	// The fatal report follows the batch's callbacks.
	deadline := time.Now().Add(5 * time.Second)
	for fatals() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if fatals() != 1 {
		t.Errorf("%d fatal reports, want 1", fatals())
	}
}
