package api

import (
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
