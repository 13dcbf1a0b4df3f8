package ratelimit

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		rate      float64
		burst     int
		attempts  []time.Duration // offsets from t0, key "a"
		want      []bool
		wantRetry time.Duration // of the last attempt
	}{
		{"burst then refused", 1, 3, []time.Duration{0, 0, 0, 0}, []bool{true, true, true, false}, time.Second},
		{"refills at the rate", 2, 1, []time.Duration{0, 0, 500 * time.Millisecond}, []bool{true, false, true}, 0},
		{"half a token left", 1, 1, []time.Duration{0, 500 * time.Millisecond}, []bool{true, false}, 500 * time.Millisecond},
		{"never above the burst", 100, 2, []time.Duration{0, time.Hour, time.Hour, time.Hour}, []bool{true, true, true, false}, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.rate, tt.burst)
			var retry time.Duration
			for i, at := range tt.attempts {
				var ok bool
				ok, retry = b.Allow("a", t0.Add(at))
				if ok != tt.want[i] {
					t.Fatalf("attempt %d at +%s: %v, want %v", i, at, ok, tt.want[i])
				}
			}
			if d := retry - tt.wantRetry; d < -time.Millisecond || d > time.Millisecond {
				t.Fatalf("retry after %s, want %s", retry, tt.wantRetry)
			}
			// Another key has its own bucket.
			if ok, _ := b.Allow("b", t0); !ok {
				t.Fatal("key b was limited by key a")
			}
		})
	}
}
