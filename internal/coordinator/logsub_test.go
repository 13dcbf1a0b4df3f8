package coordinator

import (
	"testing"

	"github.com/wardcluster/ward/internal/api"
)

func TestLogSubQueue(t *testing.T) {
	tests := []struct {
		name       string
		offers     int
		wantItems  int
		wantBehind bool
	}{
		{name: "nothing offered", offers: 0, wantItems: 0},
		{name: "a follower that keeps up", offers: 3, wantItems: 3},
		{name: "exactly the backlog limit", offers: maxFollowerBacklog, wantItems: maxFollowerBacklog},
		{name: "past the limit: the stream ends at the limit", offers: maxFollowerBacklog + 50, wantItems: maxFollowerBacklog + 1, wantBehind: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newLogSub(-1, false)
			for i := range tt.offers {
				s.offer(subItem{seq: i + 1, chunk: api.LogChunk{Task: i}})
			}
			if tt.offers > 0 && len(s.wake) != 1 {
				t.Fatal("an offer did not wake the follower")
			}
			got := s.take()
			if len(got) != tt.wantItems {
				t.Fatalf("took %d items, want %d", len(got), tt.wantItems)
			}
			for i, it := range got {
				if tt.wantBehind && i == len(got)-1 {
					if it.seq >= 0 {
						t.Fatalf("the last item is %+v, not the fell-behind marker", it)
					}
					continue
				}
				if it.seq != i+1 {
					t.Fatalf("item %d has seq %d: out of order", i, it.seq)
				}
			}
			if again := s.take(); len(again) != 0 {
				t.Fatalf("take did not empty the queue: %d left", len(again))
			}
			s.offer(subItem{seq: 1})
			if got := len(s.take()); tt.wantBehind && got != 0 || !tt.wantBehind && got != 1 {
				t.Fatalf("after the first take, an offer queued %d items (fell behind: %v)", got, tt.wantBehind)
			}
		})
	}
}
