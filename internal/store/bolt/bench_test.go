package bolt

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/wardcluster/ward/internal/store"
)

// BenchmarkTxnBatch commits batches of task-sized (~200 byte) puts, one Txn
// per iteration, so ns/op is the cost of one batch and puts/s the sustained
// insert rate. The fsync=on runs are the production setting; fsync=off
// separates the disk's fsync latency from the CPU cost of encoding and
// bbolt's page work.
func BenchmarkTxnBatch(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		for _, size := range []int{1, 100, 1000} {
			name := fmt.Sprintf("fsync=%s/batch=%d", map[bool]string{true: "on", false: "off"}[fsync], size)
			b.Run(name, func(b *testing.B) {
				s, err := Open(filepath.Join(b.TempDir(), "ward.db"), Options{NoSync: !fsync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ctx := b.Context()
				value := taskValue(0)
				ops := make([]store.Op, size)
				next, batches := 0, 0
				b.ReportAllocs()
				for b.Loop() {
					for i := range ops {
						ops[i] = store.Put("tasks/"+strconv.Itoa(100000000+next), value)
						next++
					}
					if _, err := s.Txn(ctx, nil, ops); err != nil {
						b.Fatal(err)
					}
					batches++
				}
				b.ReportMetric(float64(batches*size)/b.Elapsed().Seconds(), "puts/s")
			})
		}
	}
}
