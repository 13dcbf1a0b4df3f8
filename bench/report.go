package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one scenario's outcome: printed as table rows, or as one JSON
// object with -o json.
type Result struct {
	Scenario   string         `json:"scenario"`
	Status     string         `json:"status"` // ok, partial, not_available, failed
	Error      string         `json:"error,omitempty"`
	Figures    []*Figure      `json:"figures"`
	Params     map[string]any `json:"parameters"`
	Notes      []string       `json:"notes,omitempty"`
	GoVersion  string         `json:"go_version"`
	GOMAXPROCS int            `json:"gomaxprocs"`
	NumCPU     int            `json:"num_cpu"`
	Started    time.Time      `json:"started"`
	ElapsedS   float64        `json:"elapsed_s"`
	// MachineOther is the average number of cores other processes used
	// while the scenario ran (the machine is shared); LoadAvg is
	// /proc/loadavg at its end.
	MachineOther float64 `json:"other_processes_cores"`
	LoadAvg      string  `json:"loadavg"`
}

// Figure is one measured value, with its target and its ratio to the
// ceiling or plaintext twin it is compared with.
type Figure struct {
	Name    string   `json:"name"`
	Value   float64  `json:"value"`
	Unit    string   `json:"unit"`
	Target  string   `json:"target,omitempty"` // e.g. ">= 50000"
	Met     *bool    `json:"target_met,omitempty"`
	Ratio   *float64 `json:"ratio,omitempty"`
	RatioTo string   `json:"ratio_to,omitempty"`
	Note    string   `json:"note,omitempty"`
}

func newResult(name string) *Result {
	return &Result{
		Scenario: name, Params: map[string]any{}, Figures: []*Figure{},
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		Started: time.Now().UTC().Truncate(time.Second),
	}
}

// fig adds a figure and returns it for chaining.
func (r *Result) fig(name string, value float64, unit string) *Figure {
	f := &Figure{Name: name, Value: value, Unit: unit}
	r.Figures = append(r.Figures, f)
	return f
}

func (r *Result) param(k string, v any) { r.Params[k] = v }

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// atLeast sets a ">= t" target.
func (f *Figure) atLeast(t float64) *Figure {
	f.Target = ">= " + fmtNum(t)
	met := f.Value >= t
	f.Met = &met
	return f
}

// atMost sets a "<= t" target.
func (f *Figure) atMost(t float64) *Figure {
	f.Target = "<= " + fmtNum(t)
	met := f.Value <= t
	f.Met = &met
	return f
}

// ratio records value/base against what base is.
func (f *Figure) ratio(base float64, to string) *Figure {
	if base > 0 && !math.IsNaN(base) {
		r := round(f.Value/base, 3)
		f.Ratio = &r
		f.RatioTo = to
	}
	return f
}

func (f *Figure) withNote(s string) *Figure { f.Note = s; return f }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func fmtNum(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%d", int64(v))
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// printer prints results as they come (json) or as one table at the end.
type printer struct {
	mode    string
	w       io.Writer
	results []*Result
}

func newPrinter(mode string) *printer { return &printer{mode: mode, w: os.Stdout} }

func (p *printer) add(r *Result) {
	if p.mode == "json" {
		b, _ := json.Marshal(r)
		fmt.Fprintln(p.w, string(b))
		return
	}
	p.results = append(p.results, r)
}

func (p *printer) flush() {
	if p.mode == "json" {
		return
	}
	tw := tabwriter.NewWriter(p.w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFIGURE\tVALUE\tTARGET\tRATIO")
	for _, r := range p.results {
		if len(r.Figures) == 0 || r.Error != "" {
			msg := r.Status
			if r.Error != "" {
				msg = r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", r.Scenario, "-", msg)
		}
		for _, f := range r.Figures {
			val := fmtNum(f.Value)
			if f.Unit != "" {
				val += " " + f.Unit
			}
			target := f.Target
			if f.Met != nil {
				if *f.Met {
					target += " ok"
				} else {
					target += " MISSED"
				}
			}
			ratio := ""
			if f.Ratio != nil {
				ratio = fmt.Sprintf("%.3f of %s", *f.Ratio, f.RatioTo)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Scenario, f.Name, val, target, ratio)
		}
	}
	tw.Flush()
	// Parameters and notes below the table, per scenario.
	for _, r := range p.results {
		if len(r.Params) == 0 && len(r.Notes) == 0 {
			continue
		}
		keys := make([]string, 0, len(r.Params))
		for k := range r.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var ps []string
		for _, k := range keys {
			ps = append(ps, fmt.Sprintf("%s=%v", k, r.Params[k]))
		}
		fmt.Fprintf(p.w, "\n%s (%s, %.1fs, %s, GOMAXPROCS=%d, NumCPU=%d, other processes %.2f cores, load %s): %s\n", r.Scenario, r.Status, r.ElapsedS, r.GoVersion, r.GOMAXPROCS, r.NumCPU, r.MachineOther, r.LoadAvg, strings.Join(ps, " "))
		for _, n := range r.Notes {
			fmt.Fprintf(p.w, "  - %s\n", n)
		}
	}
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }
