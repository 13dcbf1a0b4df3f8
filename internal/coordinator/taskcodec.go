package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/sched"
)

// Task state is stored in chunks of chunkSize tasks per record, in a
// compact binary form: a 1,000-task placement writes 16 records, not 1,000,
// and each a fraction of the bytes JSON would take. This is the store's hot
// path; every other record stays JSON.
const chunkSize = 64

// chunkVersion is the first byte of every chunk record.
const chunkVersion = 1

func chunkKey(job string, chunk int) string {
	return fmt.Sprintf("%s%s/c%06d", prefixTasks, padID(job), chunk)
}

// parseChunkKey splits tasks/<job>/c<chunk>.
func parseChunkKey(key string) (job string, chunk int, ok bool) {
	rest := strings.TrimPrefix(key, prefixTasks)
	jid, c, ok := strings.Cut(rest, "/")
	if !ok || !strings.HasPrefix(c, "c") {
		return "", 0, false
	}
	n, err := strconv.ParseUint(jid, 10, 64)
	if err != nil {
		return "", 0, false
	}
	i, err := strconv.Atoi(c[1:])
	if err != nil || i < 0 {
		return "", 0, false
	}
	return strconv.FormatUint(n, 10), i, true
}

// encodeJobChunk encodes chunk number chunk of job j. Callers hold c.mu:
// encoding in place costs less than copying the tasks out to encode later
// (one buffer, not one allocation per task and attempt list).
func encodeJobChunk(j *sched.Job, chunk int) []byte {
	first := chunk * chunkSize
	last := min(first+chunkSize, len(j.Tasks))
	return encodeChunk(first, j.Tasks[first:last])
}

// persisted maps a state to what is stored: running is stored as
// assigned, because a task's start is soft state the agent's hello
// restores, so starting a task costs no write.
func persisted(s sched.State) sched.State {
	if s == sched.Running {
		return sched.Assigned
	}
	return s
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// encodeChunk writes the tasks from index first on in the binary form.
func encodeChunk(first int, tasks []sched.Task) []byte {
	size := 16 // a byte of state and flags and an attempt count per task, about 64 bytes per attempt
	for i := range tasks {
		size += 4 + 64*len(tasks[i].Attempts)
	}
	b := make([]byte, 0, size)
	b = append(b, chunkVersion)
	b = binary.AppendUvarint(b, uint64(first))
	b = binary.AppendUvarint(b, uint64(len(tasks)))
	for i := range tasks {
		t := &tasks[i]
		flags := byte(0)
		if t.CancelRequested {
			flags |= 1
		}
		b = append(b, byte(persisted(t.State)), flags)
		b = binary.AppendUvarint(b, uint64(len(t.Attempts)))
		for k := range t.Attempts {
			a := &t.Attempts[k]
			b = binary.AppendUvarint(b, uint64(a.N))
			b = appendString(b, a.Node)
			b = append(b, byte(persisted(a.State)))
			b = appendTime(b, a.Assigned)
			b = appendTime(b, a.Started)
			b = appendTime(b, a.Ended)
			af := byte(0)
			if a.HasExit {
				af |= 1
			}
			if a.Late {
				af |= 2
			}
			if a.Account != "" {
				af |= 4
			}
			if a.Requeue > 0 {
				af |= 8 // a requeue number follows (absent in older records)
			}
			b = append(b, af)
			if a.HasExit {
				b = binary.AppendVarint(b, int64(a.Exit))
			}
			if a.Requeue > 0 {
				b = binary.AppendUvarint(b, uint64(a.Requeue))
			}
			b = appendString(b, a.Reason)
			if a.Account != "" {
				b = appendString(b, a.Account)
			}
		}
	}
	return b
}

// chunkReader decodes a chunk, remembering the first error.
type chunkReader struct {
	b   []byte
	err error
}

var errChunkShort = errors.New("the record ends early")

func (r *chunkReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errChunkShort
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *chunkReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.err = fmt.Errorf("bad number in the record (%d, limit %d)", v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *chunkReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad signed number in the record")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *chunkReader) string() string {
	n := r.uvarint(1 << 20)
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errChunkShort
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *chunkReader) time() time.Time {
	v := r.varint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (r *chunkReader) state() sched.State {
	s := sched.State(r.byte())
	if r.err == nil && (s > sched.Lost || s == sched.Running) {
		r.err = fmt.Errorf("unknown task state %d in the record", s)
	}
	return s
}

// decodeChunk reads a chunk: the index of its first task and the tasks.
func decodeChunk(v []byte) (int, []sched.Task, error) {
	r := &chunkReader{b: v}
	if ver := r.byte(); r.err == nil && ver != chunkVersion {
		return 0, nil, fmt.Errorf("task chunk version %d is not one this Ward reads (%d)", ver, chunkVersion)
	}
	first := int(r.uvarint(1 << 31))
	n := int(r.uvarint(chunkSize))
	if r.err != nil {
		return 0, nil, r.err
	}
	tasks := make([]sched.Task, n)
	for i := range tasks {
		t := &tasks[i]
		t.State = r.state()
		t.CancelRequested = r.byte()&1 != 0
		na := int(r.uvarint(10000))
		if r.err != nil {
			break
		}
		t.Attempts = make([]sched.Attempt, na)
		for k := range t.Attempts {
			a := &t.Attempts[k]
			a.N = int(r.uvarint(10000))
			a.Node = r.string()
			a.State = r.state()
			a.Assigned, a.Started, a.Ended = r.time(), r.time(), r.time()
			af := r.byte()
			a.HasExit, a.Late = af&1 != 0, af&2 != 0
			if a.HasExit {
				a.Exit = int(r.varint())
			}
			if af&8 != 0 {
				a.Requeue = int(r.uvarint(1 << 20))
			}
			a.Reason = r.string()
			if af&4 != 0 {
				a.Account = r.string()
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes left over at the end of the record", len(r.b))
	}
	if r.err != nil {
		return 0, nil, r.err
	}
	return first, tasks, nil
}
