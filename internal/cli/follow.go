package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// chunkSink receives a followed job's output.
type chunkSink interface {
	chunk(api.LogChunk) error
	// flush writes what is held back (partial lines) and releases files.
	flush() error
}

// followLogs streams a job's output to sink until it ends, reconnecting
// (and skipping what it already has) if the coordinator restarts. With all,
// it also asks for output beyond the coordinator's per-task limit, which
// is sent only to live followers.
func followLogs(ctx context.Context, g *globals, c *client, id string, task int, sink chunkSink, all bool) (end api.LogChunk, err error) {
	defer func() {
		if ferr := sink.flush(); err == nil {
			err = ferr
		}
	}()
	seen := map[int]int{}
	q := url.Values{"follow": {"1"}}
	if task >= 0 {
		q.Set("task", strconv.Itoa(task))
	}
	if all {
		q.Set("all", "1")
	}
	var lastErr error
	deadline := time.Now().Add(5 * time.Minute)
	for backoff := 200 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		resp, err := c.send(ctx, "GET", "/v1/jobs/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil)
		if err == nil {
			lastErr = nil
			dec := json.NewDecoder(resp.Body)
			for {
				var ch api.LogChunk
				if err = dec.Decode(&ch); err != nil {
					break
				}
				if ch.End && ch.JobState != "unknown" {
					resp.Body.Close()
					return ch, nil
				}
				if ch.End || (!ch.Unstored && ch.Seq <= seen[ch.Task]) {
					continue
				}
				if !ch.Unstored {
					seen[ch.Task] = ch.Seq
				}
				if err := sink.chunk(ch); err != nil {
					resp.Body.Close()
					return api.LogChunk{}, err
				}
			}
			resp.Body.Close()
			backoff = 200 * time.Millisecond
		}
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code != api.CodeUnavailable {
			return api.LogChunk{}, err
		}
		if ctx.Err() != nil {
			return api.LogChunk{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return api.LogChunk{}, api.Errorf(api.CodeUnavailable, fmt.Sprintf("the job keeps running: `ward logs %s -f` follows it again once the coordinator answers", id),
				"lost the coordinator while following job %s and could not reconnect for 5 minutes: %v", id, err)
		}
		if lastErr == nil {
			fmt.Fprintf(g.stderr, "ward: lost the connection to the coordinator; reconnecting (tasks keep running)\n")
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return api.LogChunk{}, ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// linePrinter prefixes every output line with its task index: stdout to
// stdout, stderr to stderr. With -o json it prints each chunk as a JSON
// line instead.
type linePrinter struct {
	g   *globals
	buf map[string]*bytes.Buffer
}

func newLinePrinter(g *globals) *linePrinter {
	return &linePrinter{g: g, buf: map[string]*bytes.Buffer{}}
}

func (p *linePrinter) chunk(ch api.LogChunk) error {
	if p.g.json() {
		return printJSONLine(p.g.stdout, ch)
	}
	key := strconv.Itoa(ch.Task) + "/" + ch.Stream
	b := p.buf[key]
	if b == nil {
		b = &bytes.Buffer{}
		p.buf[key] = b
	}
	b.WriteString(ch.Data)
	for {
		line, err := b.ReadString('\n')
		if err != nil {
			b.Reset()
			b.WriteString(line)
			break
		}
		p.emit(ch.Task, ch.Stream, line)
	}
	if ch.Note != "" {
		if b.Len() > 0 {
			p.emit(ch.Task, ch.Stream, b.String())
			b.Reset()
		}
		fmt.Fprintf(p.g.stderr, "[%d] [ward: %s]\n", ch.Task, ch.Note)
	}
	return nil
}

func (p *linePrinter) emit(task int, stream, line string) {
	w := p.g.stdout
	if stream == "stderr" {
		w = p.g.stderr
	}
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	fmt.Fprintf(w, "[%d] %s", task, line)
}

// flush prints partial last lines.
func (p *linePrinter) flush() error {
	keys := make([]string, 0, len(p.buf))
	for k := range p.buf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if b := p.buf[k]; b.Len() > 0 {
			task, stream, _ := strings.Cut(k, "/")
			n, _ := strconv.Atoi(task)
			p.emit(n, stream, b.String())
			b.Reset()
		}
	}
	return nil
}

// outputDir writes each task's stdout and stderr to files in a directory,
// byte for byte and with no cap but the disk: task-INDEX.stdout and
// task-INDEX.stderr, and task-INDEX.attempt-N.stdout for a retried task's
// later attempts.
type outputDir struct {
	dir   string
	files map[string]*os.File
	tasks map[int]bool
}

func newOutputDir(dir string) (*outputDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "give --output-dir a directory this user can create and write", "--output-dir %s: %v", dir, err)
	}
	return &outputDir{dir: dir, files: map[string]*os.File{}, tasks: map[int]bool{}}, nil
}

// name is the file of one attempt's stream.
func (o *outputDir) name(task, attempt int, stream string) string {
	if stream != "stderr" {
		stream = "stdout"
	}
	if attempt > 1 {
		return fmt.Sprintf("task-%d.attempt-%d.%s", task, attempt, stream)
	}
	return fmt.Sprintf("task-%d.%s", task, stream)
}

func (o *outputDir) chunk(ch api.LogChunk) error {
	if ch.Data == "" {
		return nil
	}
	name := o.name(ch.Task, ch.Attempt, ch.Stream)
	f := o.files[name]
	if f == nil {
		var err error
		// Truncate on first write: a rerun into the same directory
		// replaces the files instead of appending to them.
		if f, err = os.OpenFile(filepath.Join(o.dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666); err != nil {
			return api.Errorf(api.CodeUnavailable, "free space or fix the permissions of --output-dir, then `ward logs JOB` prints the output kept", "write task output: %v", err)
		}
		o.files[name] = f
		o.tasks[ch.Task] = true
	}
	if _, err := io.WriteString(f, ch.Data); err != nil {
		return api.Errorf(api.CodeUnavailable, "free space or fix the permissions of --output-dir, then `ward logs JOB` prints the output kept", "write %s: %v", f.Name(), err)
	}
	return nil
}

func (o *outputDir) flush() error {
	var first error
	for name, f := range o.files {
		if err := f.Close(); err != nil && first == nil {
			first = fmt.Errorf("close %s: %w", f.Name(), err)
		}
		delete(o.files, name)
	}
	return first
}
