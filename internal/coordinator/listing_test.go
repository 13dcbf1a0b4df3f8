package coordinator

import (
	"fmt"
	"testing"
)

func TestPage(t *testing.T) {
	all := []int{0, 1, 2, 3, 4}
	for _, tc := range []struct {
		offset, limit int
		want          string
	}{
		{0, 0, "[0 1 2 3 4]"},
		{0, 2, "[0 1]"},
		{2, 2, "[2 3]"},
		{4, 2, "[4]"},
		{5, 2, "[]"},
		{9, 0, "[]"},
		{-1, 1, "[0]"},
	} {
		got := fmt.Sprint(page(all, tc.offset, tc.limit))
		if got != tc.want {
			t.Errorf("page(offset %d, limit %d) = %s, want %s", tc.offset, tc.limit, got, tc.want)
		}
		if p := page(all, tc.offset, tc.limit); p == nil {
			t.Errorf("page(offset %d, limit %d) is nil; JSON would say null", tc.offset, tc.limit)
		}
	}
}

func TestUserMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, by string
		want       bool
	}{
		{"admin", "spiffe://c1/user/admin", true},
		{"spiffe://c1/user/admin", "spiffe://c1/user/admin", true},
		{"dmin", "spiffe://c1/user/admin", false},
		{"admin", "spiffe://c1/user/admin2", false},
		{"n1", "spiffe://c1/agent/n1", false},
	} {
		if got := userMatches(tc.filter, tc.by); got != tc.want {
			t.Errorf("userMatches(%q, %q) = %v", tc.filter, tc.by, got)
		}
	}
}
