package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wardcluster/ward/internal/store"
)

// Txn applies ops atomically when every condition holds, as one etcd
// transaction (one raft entry), and returns the new revision. etcd refuses
// a transaction that writes one key twice or writes a key inside a range it
// deletes, so ops are first folded to their net effect (see plan): the
// result is the same as applying them in order, except that a key deleted
// and written again in one Txn keeps its CreateRev.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if err := validateOps(ops); err != nil {
		return 0, err
	}
	lim := s.opts.Limits
	if n, b := max(len(ops), len(conds)), store.TxnBytes(ops); n > lim.MaxOps || b > lim.MaxBytes {
		return 0, fmt.Errorf("%w: %d ops and %d conditions of %d bytes; this store sends at most %d ops of %d bytes in one transaction",
			store.ErrTxnTooLarge, len(ops), len(conds), b, lim.MaxOps, lim.MaxBytes)
	}
	cctx, done, err := s.call(ctx, true)
	if err != nil {
		return 0, err
	}
	defer done()
	cmps := make([]clientv3.Cmp, len(conds))
	reads := make([]clientv3.Op, len(conds))
	for i, c := range conds {
		cmps[i] = clientv3.Compare(clientv3.ModRevision(s.full(c.Key)), "=", c.ModRev)
		reads[i] = clientv3.OpGet(s.full(c.Key), clientv3.WithKeysOnly())
	}
	resp, err := s.cli.Txn(cctx).If(cmps...).Then(s.plan(ops)...).Else(reads...).Commit()
	if err != nil {
		return 0, s.fail(ctx, fmt.Sprintf("transaction of %d ops", len(ops)), err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	// The Else reads saw the same revision the conditions were checked at.
	for i, c := range conds {
		var have int64
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			have = kvs[0].ModRevision
		}
		if have != c.ModRev {
			return 0, &store.ConflictError{Key: c.Key, WantRev: c.ModRev, HaveRev: have}
		}
	}
	return 0, fmt.Errorf("etcd: transaction failed although every condition read back as holding (conditions %v)", conds)
}

// validateOps rejects malformed ops before anything is sent.
func validateOps(ops []store.Op) error {
	for i, op := range ops {
		if err := store.CheckOp(op); err != nil {
			return fmt.Errorf("etcd: op %d: %w", i, err)
		}
	}
	return nil
}

// step is one op of a folded plan: a point write (end == "") or the delete
// of the range [key, end).
type step struct {
	typ   store.OpType
	key   string // full etcd key
	end   string
	value []byte
}

// plan folds ops to their net effect as etcd ops. A later write to a key
// replaces an earlier one; a deleted range swallows the point writes before
// it; a point write after a deleted range that covers it splits the range
// around the key. So no key is written twice and no write falls inside a
// deleted range, which is what etcd requires of one transaction.
func (s *Store) plan(ops []store.Op) []clientv3.Op {
	if !hasRange(ops) {
		return s.planPoints(ops)
	}
	var steps []step
	for _, op := range ops {
		switch op.Type {
		case store.OpPut, store.OpDelete:
			k := s.full(op.Key)
			steps = dropPoint(steps, k)
			if op.Type == store.OpPut {
				steps = append(splitAround(steps, k), step{typ: op.Type, key: k, value: op.Value})
			} else if !covers(steps, k) {
				steps = append(steps, step{typ: op.Type, key: k})
			}
		case store.OpDeletePrefix:
			k := s.full(op.Key)
			end := clientv3.GetPrefixRangeEnd(k)
			kept := steps[:0]
			for _, st := range steps {
				if st.end != "" || st.key < k || st.key >= end {
					kept = append(kept, st)
				}
			}
			steps = append(kept, step{typ: store.OpDeletePrefix, key: k, end: end})
		}
	}
	out := make([]clientv3.Op, 0, len(steps))
	for _, st := range steps {
		switch {
		case st.typ == store.OpPut:
			out = append(out, clientv3.OpPut(st.key, string(st.value)))
		case st.end != "":
			out = append(out, clientv3.OpDelete(st.key, clientv3.WithRange(st.end)))
		default:
			out = append(out, clientv3.OpDelete(st.key))
		}
	}
	return out
}

// dropPoint removes earlier point writes of k.
func dropPoint(steps []step, k string) []step {
	kept := steps[:0]
	for _, st := range steps {
		if st.end != "" || st.key != k {
			kept = append(kept, st)
		}
	}
	return kept
}

// covers reports whether a deleted range in steps covers k.
func covers(steps []step, k string) bool {
	for _, st := range steps {
		if st.end != "" && st.key <= k && k < st.end {
			return true
		}
	}
	return false
}

// splitAround splits every deleted range that covers k into the parts
// before and after it, in place of the range.
func splitAround(steps []step, k string) []step {
	var out []step
	for _, st := range steps {
		if st.end == "" || k < st.key || k >= st.end {
			out = append(out, st)
			continue
		}
		if st.key < k {
			out = append(out, step{typ: store.OpDeletePrefix, key: st.key, end: k})
		}
		if after := k + "\x00"; after < st.end {
			out = append(out, step{typ: store.OpDeletePrefix, key: after, end: st.end})
		}
	}
	return out
}

func hasRange(ops []store.Op) bool {
	for _, op := range ops {
		if op.Type == store.OpDeletePrefix {
			return true
		}
	}
	return false
}

// planPoints is plan for ops without ranges, in linear time: the journal's
// group commits carry thousands of puts, some to the same key.
func (s *Store) planPoints(ops []store.Op) []clientv3.Op {
	last := make(map[string]int, len(ops))
	for i, op := range ops {
		last[op.Key] = i
	}
	out := make([]clientv3.Op, 0, len(last))
	for i, op := range ops {
		if last[op.Key] != i {
			continue
		}
		if op.Type == store.OpPut {
			out = append(out, clientv3.OpPut(s.full(op.Key), string(op.Value)))
		} else {
			out = append(out, clientv3.OpDelete(s.full(op.Key)))
		}
	}
	return out
}
