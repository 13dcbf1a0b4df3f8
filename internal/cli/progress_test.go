package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

func TestFormatProgress(t *testing.T) {
	for _, tc := range []struct {
		name string
		pr   api.JobProgress
		rate float64
		want string
	}{
		{"no rate yet", api.JobProgress{ID: "7", Tasks: 10, Counts: map[string]int{api.TaskQueued: 8, api.TaskRunning: 1, api.TaskAssigned: 1}},
			0, "job 7: 0/10 done, 0 failed, 2 running, 8 queued | 0.00 tasks/s | ETA -"},
		{"eta from rate", api.JobProgress{ID: "7", Tasks: 100, Failed: 10, Counts: map[string]int{api.TaskCompleted: 30, api.TaskFailed: 10, api.TaskQueued: 60}},
			4, "job 7: 30/100 done, 10 failed, 0 running, 60 queued | 4.00 tasks/s | ETA 15s"},
		{"minutes", api.JobProgress{ID: "7", Tasks: 100000, Counts: map[string]int{api.TaskQueued: 100000}},
			123.4, "job 7: 0/100000 done, 0 failed, 0 running, 100000 queued | 123 tasks/s | ETA 13m30s"},
		{"ended", api.JobProgress{ID: "7", Tasks: 3, Failed: 1, Counts: map[string]int{api.TaskCompleted: 2, api.TaskLost: 1}},
			0, "job 7: 2/3 done, 1 failed, 0 running, 0 queued | 0.00 tasks/s | ETA 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatProgress(tc.pr, tc.rate); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRateMeterWindow(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1000, 0)
	if r := m.observe(t0, 0); r != 0 {
		t.Fatalf("one sample: rate %v, want 0", r)
	}
	// 10 tasks/s for 20 s, then 0 for 11 s: the window forgets the past.
	for i := 1; i <= 20; i++ {
		m.observe(t0.Add(time.Duration(i)*time.Second), 10*i)
	}
	if r := m.observe(t0.Add(21*time.Second), 210); r < 9.9 || r > 10.1 {
		t.Fatalf("steady 10/s: rate %v", r)
	}
	var r float64
	for i := 22; i <= 33; i++ {
		r = m.observe(t0.Add(time.Duration(i)*time.Second), 210)
	}
	if r != 0 {
		t.Fatalf("stalled for longer than the window: rate %v, want 0", r)
	}
}

func TestProgressLineKeepsOutputApart(t *testing.T) {
	var errb bytes.Buffer
	p := &progressLine{err: &errb, live: true}
	out := p.writer(&errb)
	p.set("job 1: 0/2", time.Now())
	out.Write([]byte("[0] hello\n"))
	p.set("job 1: 1/2", time.Now())
	p.done()
	out.Write([]byte("after\n"))
	want := "job 1: 0/2\r\x1b[K[0] hello\njob 1: 0/2\r\x1b[Kjob 1: 1/2\nafter\n"
	if errb.String() != want {
		t.Fatalf("got  %q\nwant %q", errb.String(), want)
	}
}
