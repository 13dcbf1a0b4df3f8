package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAssignExpand(t *testing.T) {
	tests := []struct {
		name    string
		frame   Assign
		want    []string // argv per task, joined by spaces
		wantErr string
	}{
		{
			name: "index substituted in every argument, template shared",
			frame: Assign{Jobs: []AssignJob{{Job: "7", Argv: []string{"run", "--seed", "{index}", "out-{index}.csv"}, Slots: 2}},
				Tasks: []AttemptRef{{Job: "7", Task: 0, Attempt: 1}, {Job: "7", Task: 12, Attempt: 2}}},
			want: []string{"run --seed 0 out-0.csv", "run --seed 12 out-12.csv"},
		},
		{
			name:    "task without its job template",
			frame:   Assign{Tasks: []AttemptRef{{Job: "9", Task: 1, Attempt: 1}}},
			wantErr: "without its template",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.frame.Expand()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for i, a := range got {
				if strings.Join(a.Argv, " ") != tt.want[i] || a.Slots != 2 || a.AttemptRef != tt.frame.Tasks[i] {
					t.Fatalf("task %d: %+v", i, a)
				}
			}
			// The template itself is untouched.
			if tt.frame.Jobs[0].Argv[2] != "{index}" {
				t.Fatal("Expand changed the shared template")
			}
		})
	}
}

func TestBinaryFramesRoundTrip(t *testing.T) {
	msgs := []struct {
		t    FrameType
		in   any
		out  any
		same func(a, b any) bool
	}{
		{FrameAssign, &Assign{Jobs: []AssignJob{{Job: "12", Argv: []string{"sh", "-c", "echo {index}"}, Env: map[string]string{"A": "b"}, Dir: "/tmp", Slots: 3, Timeout: 5e9}},
			Tasks: []AttemptRef{{Job: "12", Task: 4, Attempt: 2}}}, &Assign{}, nil},
		{FrameAssign, &Assign{Jobs: []AssignJob{{Job: "1", Argv: []string{"x"}, Slots: 1}, {Job: "2", Argv: []string{"y"}, Slots: 1, Setup: "mkdir -p /scratch", Teardown: "rm -rf /scratch"}},
			Tasks: []AttemptRef{{Job: "1", Task: 0, Attempt: 1}, {Job: "2", Task: 0, Attempt: 1}}}, &Assign{}, nil},
		{FrameStarted, &Started{Refs: []StartedRef{{AttemptRef: AttemptRef{Job: "1", Task: 0, Attempt: 1}, At: 1234567890123}}}, &Started{}, nil},
		{FrameResults, &Results{Results: []TaskResult{{AttemptRef: AttemptRef{Job: "1", Task: 9, Attempt: 3}, ExitCode: -1, Reason: EndStartErr, Error: "no such file", Started: 5, Ended: 6}}}, &Results{}, nil},
		{FrameAck, &Ack{Refs: []AttemptRef{{Job: "3", Task: 1, Attempt: 1}}}, &Ack{}, nil},
		// The run-as trailers: each job's user, each result's account.
		{FrameAssign, &Assign{Jobs: []AssignJob{{Job: "12", Argv: []string{"true"}, Slots: 1, User: "alice"}, {Job: "13", Argv: []string{"true"}, Slots: 1, User: "bob"}},
			Tasks: []AttemptRef{{Job: "12", Task: 0, Attempt: 1}}}, &Assign{}, nil},
		{FrameResults, &Results{Results: []TaskResult{{AttemptRef: AttemptRef{Job: "1", Task: 9, Attempt: 3}, Reason: EndExited, Started: 5, Ended: 6, Account: "alice"},
			{AttemptRef: AttemptRef{Job: "1", Task: 10, Attempt: 1}, Reason: EndExited, Started: 5, Ended: 6}}}, &Results{}, nil},
	}
	for _, m := range msgs {
		frame, err := AppendFrame(nil, m.t, m.in)
		if err != nil {
			t.Fatal(err)
		}
		if frame[5] != binaryVersion {
			t.Fatalf("frame %d is not binary", m.t)
		}
		typ, body, err := ReadFrame(strings.NewReader(string(frame)), make([]byte, 5))
		if err != nil || typ != m.t {
			t.Fatal(err)
		}
		if err := DecodeFrame(typ, body, m.out); err != nil {
			t.Fatal(err)
		}
		in, _ := json.Marshal(m.in)
		out, _ := json.Marshal(m.out)
		if string(in) != string(out) {
			t.Fatalf("frame %d round trip:\n in %s\nout %s", m.t, in, out)
		}
	}
	// Damage is refused.
	frame, _ := AppendFrame(nil, FrameResults, &Results{Results: []TaskResult{{Reason: "exited"}}})
	for _, bad := range [][]byte{frame[5 : len(frame)-1], {9, 0}, {}} {
		if err := DecodeFrame(FrameResults, bad, &Results{}); err == nil {
			t.Errorf("accepted damaged body %x", bad)
		}
	}
}

func FuzzDecodeBinaryFrames(f *testing.F) {
	frame, _ := AppendFrame(nil, FrameAssign, &Assign{Jobs: []AssignJob{{Job: "1", Argv: []string{"x"}}}, Tasks: []AttemptRef{{Job: "1"}}})
	f.Add(frame[5:])
	frame, _ = AppendFrame(nil, FrameResults, &Results{Results: []TaskResult{{Reason: "exited"}}})
	f.Add(frame[5:])
	f.Fuzz(func(t *testing.T, body []byte) {
		DecodeFrame(FrameAssign, body, &Assign{})
		DecodeFrame(FrameResults, body, &Results{})
		DecodeFrame(FrameStarted, body, &Started{})
		DecodeFrame(FrameAck, body, &Ack{})
	})
}
