package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// printJSONLine prints v as one line of JSON, for output that is a stream
// of JSON lines (ward run, ward logs).
func printJSONLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, headers ...any) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprintln(t.tw)
}

func (t *table) flush() { t.tw.Flush() }

// ago renders a time relative to now for tables.
func until(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Until(t)
	if d < 0 {
		return "EXPIRED " + (-d).Round(time.Second).String() + " ago"
	}
	switch {
	case d > 48*time.Hour:
		return fmt.Sprintf("in %dd", int(d.Hours()/24))
	case d > time.Hour:
		return fmt.Sprintf("in %dh", int(d.Hours()))
	}
	return "in " + d.Round(time.Second).String()
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
