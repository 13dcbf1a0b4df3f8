package api

import (
	"testing"
	"time"
)

func TestLivenessTimeout(t *testing.T) {
	for _, tc := range []struct {
		interval, want time.Duration
	}{
		{100 * time.Millisecond, 2300 * time.Millisecond}, // grace at its 2 s floor
		{time.Second, 5 * time.Second},
		{5 * time.Second, 25 * time.Second},   // the default interval
		{50 * time.Second, 160 * time.Second}, // a stretched interval: grace capped at 10 s
	} {
		if got := LivenessTimeout(tc.interval); got != tc.want {
			t.Errorf("LivenessTimeout(%s) = %s, want %s", tc.interval, got, tc.want)
		}
		if got := LivenessTimeout(tc.interval); got < 2*tc.interval {
			t.Errorf("LivenessTimeout(%s) = %s leaves less than two intervals for a heartbeat and its answer", tc.interval, got)
		}
	}
}
